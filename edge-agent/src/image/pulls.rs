//! Image pulls in the background: each runs on its own thread, reports progress into a
//! shared map, and pokes the daemon through its socket when done. A pull never blocks a
//! reconcile pass, so status (with progress) keeps flowing while a big image downloads.
//! A local layout whose layers are already extracted needs no thread: it resolves at once.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ImageError, ImageStore, PreparedImage, Progress, PullConfig};

enum Pull {
    Running(Progress),
    Done(Result<PreparedImage, ImageError>),
}

/// The pulls in flight and those finished but not yet collected.
#[derive(Clone, Default)]
pub struct Pulls {
    map: Arc<Mutex<BTreeMap<String, Pull>>>,
}

impl Pulls {
    /// Starts pulling `reference` unless a pull of it is already running. A local layout
    /// whose layers are all extracted is resolved at once on the caller's thread (no
    /// thread, no wake-up round trip): its result is there for the next round of the pass.
    pub fn start(&self, store: &ImageStore, reference: &str, cfg: PullConfig, notify: PathBuf) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(reference) {
            return;
        }
        if let Some(result) = store.prepare_local(reference) {
            map.insert(reference.to_string(), Pull::Done(result));
            return;
        }
        map.insert(
            reference.to_string(),
            Pull::Running(Progress {
                done_bytes: 0,
                total_bytes: 0,
            }),
        );
        drop(map);
        let key = reference.to_string();
        let (pulls, store, reference) = (self.clone(), store.clone(), reference.to_string());
        let spawned = std::thread::Builder::new()
            .name("pull".into())
            .spawn(move || {
                let progress = |p: Progress| pulls.set(&reference, Pull::Running(p));
                let result = store.prepare_with(&reference, &cfg, &progress);
                pulls.set(&reference, Pull::Done(result));
                if let Ok(sock) = UnixDatagram::unbound() {
                    let _ = sock.send_to(format!("image {reference}").as_bytes(), &notify);
                }
            });
        if let Err(e) = spawned {
            self.set(
                &key,
                Pull::Done(Err(ImageError::Io {
                    context: "starting a pull thread".to_owned(),
                    source: e,
                })),
            );
        }
    }

    fn set(&self, reference: &str, pull: Pull) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(reference.to_string(), pull);
    }

    /// Removes and returns the finished pulls.
    pub fn take_finished(&self) -> Vec<(String, Result<PreparedImage, ImageError>)> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let done: Vec<String> = map
            .iter()
            .filter(|(_, p)| matches!(p, Pull::Done(_)))
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|k| match map.remove(&k) {
                Some(Pull::Done(r)) => Some((k, r)),
                _ => None,
            })
            .collect()
    }

    /// Progress of the pulls still running.
    pub fn running(&self) -> Vec<(String, Progress)> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .filter_map(|(k, p)| match p {
                Pull::Running(pr) => Some((k.clone(), *pr)),
                Pull::Done(_) => None,
            })
            .collect()
    }
}
