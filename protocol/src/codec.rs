//! The versioned postcard envelope every MQTT payload travels in.
//!
//! Layout: `version: u16 (varint) | kind: u8 | body (postcard)`. The size is checked
//! before anything is decoded, and every failure is an error value, never a panic:
//! payloads come from the network and may be anything.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{DesiredState, DeviceStatus};

/// Envelope version written by this build. Bump it when a wire struct changes shape
/// (2: `WorkloadSpec.labels`, 3: `ContainerSpec.init`); `compat::decode_any` still reads older versions.
pub const VERSION: u16 = 5;

/// Largest payload accepted or produced (see `limits`, where every size limit lives).
pub use crate::limits::MAX_MESSAGE_BYTES;

/// A type that travels in the envelope, with a tag so one kind is never read as another.
pub trait Wire: Serialize + DeserializeOwned {
    const KIND: u8;
    const KIND_NAME: &'static str;
}

impl Wire for DesiredState {
    const KIND: u8 = 1;
    const KIND_NAME: &'static str = "desired state";
}

impl Wire for DeviceStatus {
    const KIND: u8 = 2;
    const KIND_NAME: &'static str = "device status";
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(usize),
    #[error("message envelope version {found} is not supported (expected {VERSION})")]
    Version { found: u16 },
    #[error("expected a {expected} message, got kind {found}")]
    Kind { expected: &'static str, found: u8 },
    #[error("malformed {kind} message: {source}")]
    Malformed {
        kind: &'static str,
        source: postcard::Error,
    },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Encodes `msg` in the current envelope.
pub fn encode<T: Wire>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let bytes =
        postcard::to_stdvec(&(VERSION, T::KIND, msg)).map_err(|source| CodecError::Malformed {
            kind: T::KIND_NAME,
            source,
        })?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes a `T` from an envelope, checking size, version, kind and trailing bytes.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    let (version, rest) = open_envelope::<T>(bytes)?;
    if version != VERSION {
        return Err(CodecError::Version { found: version });
    }
    decode_body::<T, T>(rest)
}

/// Checks the size and reads the envelope's version; the rest is kind and body.
pub(crate) fn open_envelope<T: Wire>(bytes: &[u8]) -> Result<(u16, &[u8]), CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    postcard::take_from_bytes::<u16>(bytes).map_err(malformed::<T>)
}

/// Checks the kind byte of a `T` and decodes its body as `B` (`T` itself, or the shape
/// `T` had in an older envelope version), refusing trailing bytes.
pub(crate) fn decode_body<T: Wire, B: serde::de::DeserializeOwned>(
    rest: &[u8],
) -> Result<B, CodecError> {
    let (kind, rest) = postcard::take_from_bytes::<u8>(rest).map_err(malformed::<T>)?;
    if kind != T::KIND {
        return Err(CodecError::Kind {
            expected: T::KIND_NAME,
            found: kind,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<B>(rest).map_err(malformed::<T>)?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(msg)
}

fn malformed<T: Wire>(source: postcard::Error) -> CodecError {
    CodecError::Malformed {
        kind: T::KIND_NAME,
        source,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::types::*;
    use crate::{ImageRef, Name};

    fn name() -> impl Strategy<Value = Name> {
        "[a-z][a-z0-9-]{0,10}[a-z0-9]".prop_map(|s| Name::new(s).unwrap())
    }

    fn container() -> impl Strategy<Value = ContainerSpec> {
        (
            name(),
            "[a-z0-9]{1,10}(:[a-z0-9]{1,8})?",
            prop::collection::vec(".{0,10}", 0..4),
            any::<Option<u64>>(),
            any::<Option<u32>>(),
        )
            .prop_map(|(name, image, args, mem, pids)| ContainerSpec {
                name,
                image: ImageRef::new(image).unwrap(),
                command: vec![],
                args,
                env: vec![EnvVar {
                    name: "A".into(),
                    value: "b".into(),
                }],
                working_dir: Some("/".into()),
                mounts: vec![Mount {
                    source: MountSource::Tmpfs {
                        size_bytes: 1 << 20,
                    },
                    target: "/tmp".into(),
                    read_only: false,
                }],
                resources: Resources {
                    memory_bytes: mem,
                    cpu_millis: Some(250),
                    pids,
                },
                devices: vec![HostDevice {
                    host_path: "/dev/i2c-1".into(),
                    container_path: None,
                    permissions: "rw".into(),
                }],
                init: pids.is_some(),
                liveness_probe: mem.map(|m| {
                    let mut p = Probe::new(ProbeAction::HttpGet {
                        path: "/healthz".into(),
                        port: (m % 65535) as u16 + 1,
                        scheme: HttpScheme::Https,
                        headers: vec![("X-A".into(), "b".into())],
                    });
                    p.period_s = (m % 100) as u32 + 1;
                    p
                }),
                readiness_probe: pids
                    .map(|p| Probe::new(ProbeAction::TcpSocket { port: p as u16 })),
                startup_probe: Some(Probe::new(ProbeAction::Exec {
                    command: vec!["cat".into(), "/ready".into()],
                })),
                depends_on: vec![Dependency {
                    name: Name::new("setup").unwrap(),
                    condition: DependencyCondition::Completed,
                }],
                security: Default::default(),
                env_refs: vec![],
            })
    }

    fn desired() -> impl Strategy<Value = DesiredState> {
        (
            name(),
            any::<u64>(),
            prop::collection::vec((name(), prop::collection::vec(container(), 1..3)), 0..4),
        )
            .prop_map(|(device, generation, wls)| DesiredState {
                device,
                generation,
                workloads: wls
                    .into_iter()
                    .map(|(name, containers)| {
                        let previous = WorkloadSpec {
                            revision: generation % 7,
                            ..WorkloadSpec::new(name.clone(), containers.clone())
                        };
                        WorkloadSpec {
                            name,
                            containers,
                            restart_policy: RestartPolicy::OnFailure,
                            network: NetworkMode::None,
                            volumes: vec![Name::new("data").unwrap()],
                            stop_grace_ms: 5000,
                            labels: [("app".to_string(), "web".to_string())].into(),
                            depends_on: vec![Dependency {
                                name: Name::new("db").unwrap(),
                                condition: DependencyCondition::Healthy,
                            }],
                            revision: generation % 7 + 1,
                            health_timeout_ms: 120_000,
                            min_ready_ms: 10_000,
                            fallback: Some(Box::new(previous)),
                        }
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn desired_state_round_trips(d in desired()) {
            let bytes = encode(&d).unwrap();
            prop_assert_eq!(decode::<DesiredState>(&bytes).unwrap(), d);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode::<DesiredState>(&bytes);
            let _ = decode::<DeviceStatus>(&bytes);
        }

        #[test]
        fn corrupted_messages_never_panic(d in desired(), idx in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encode(&d).unwrap();
            let i = idx.index(bytes.len());
            bytes[i] = byte;
            let _ = decode::<DesiredState>(&bytes);
            bytes.truncate(i);
            let _ = decode::<DesiredState>(&bytes);
        }
    }

    #[test]
    fn rejects_wrong_version_kind_size_and_trailing_bytes() {
        let d = DesiredState {
            device: Name::new("pi").unwrap(),
            generation: 3,
            workloads: vec![],
        };
        let bytes = encode(&d).unwrap();
        assert!(matches!(
            decode::<DeviceStatus>(&bytes),
            Err(CodecError::Kind { found: 1, .. })
        ));
        let mut other = bytes.clone();
        other[0] = VERSION as u8 + 1;
        assert!(matches!(
            decode::<DesiredState>(&other),
            Err(CodecError::Version { found }) if found == VERSION + 1
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<DesiredState>(&long),
            Err(CodecError::Trailing(1))
        ));
        let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode::<DesiredState>(&huge),
            Err(CodecError::TooLarge(_))
        ));
        // A name that breaks the rules is rejected while decoding, not trusted.
        let bad = postcard::to_stdvec(&(VERSION, 1u8, ("Bad/Name", 1u64, 0u8))).unwrap();
        assert!(matches!(
            decode::<DesiredState>(&bad),
            Err(CodecError::Malformed { .. })
        ));
    }
}
