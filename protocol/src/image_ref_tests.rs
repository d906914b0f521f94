#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn r(s: &str) -> ImageRef {
    ImageRef::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn digest() -> Digest {
    Digest::of(b"manifest")
}

fn tag(t: &str) -> Selector {
    Selector::Tag(t.into())
}

fn registry(s: &str) -> (String, String, Selector) {
    match r(s).source().clone() {
        ImageSource::Registry(x) => (x.host, x.repo, x.selector),
        other => panic!("{s}: {other:?}"),
    }
}

fn oci(s: &str) -> (String, Selector) {
    match r(s).source().clone() {
        ImageSource::Oci(x) => (x.layout, x.selector),
        other => panic!("{s}: {other:?}"),
    }
}

#[test]
fn oci_layouts() {
    assert_eq!(oci("oci:/img/app:v1"), ("/img/app".into(), tag("v1")));
    assert_eq!(oci("oci:/img/app"), ("/img/app".into(), Selector::Default));
    assert_eq!(
        oci("oci:rel/app:1.2_x-y"),
        ("rel/app".into(), tag("1.2_x-y"))
    );
    assert_eq!(oci("oci:/a:b/app"), ("/a:b/app".into(), Selector::Default));
    assert_eq!(oci("oci:/a:b/app:t"), ("/a:b/app".into(), tag("t")));
    let pinned = format!("oci:/img/app@{}", digest());
    assert_eq!(
        oci(&pinned),
        ("/img/app".into(), Selector::Digest(digest()))
    );
}

#[test]
fn registries_and_docker_hub() {
    assert_eq!(
        registry("127.0.0.1:5000/busybox:latest"),
        ("127.0.0.1:5000".into(), "busybox".into(), tag("latest"))
    );
    assert_eq!(
        registry("registry.local/team/app"),
        (
            "registry.local".into(),
            "team/app".into(),
            Selector::Default
        )
    );
    assert_eq!(
        registry("localhost/app:v1"),
        ("localhost".into(), "app".into(), tag("v1"))
    );
    assert_eq!(
        registry("[::1]:5000/app"),
        ("[::1]:5000".into(), "app".into(), Selector::Default)
    );
    let hub = |repo: &str, s| ("docker.io".to_owned(), repo.to_owned(), s);
    assert_eq!(
        registry("busybox"),
        hub("library/busybox", Selector::Default)
    );
    assert_eq!(registry("nginx:1.25"), hub("library/nginx", tag("1.25")));
    assert_eq!(registry("user/app"), hub("user/app", Selector::Default));
    assert_eq!(
        registry("docker.io/nginx"),
        hub("library/nginx", Selector::Default)
    );
    assert_eq!(
        registry("index.docker.io/a/b"),
        hub("a/b", Selector::Default)
    );
    let both = format!("ghcr.io/o/app:1.0@{}", digest());
    assert_eq!(
        registry(&both),
        ("ghcr.io".into(), "o/app".into(), Selector::Digest(digest()))
    );
    let ImageSource::Registry(x) = r("busybox").source().clone() else {
        panic!()
    };
    assert_eq!(
        (x.api_host(), x.selector.manifest_ref()),
        (DOCKER_HUB_API, "latest".into())
    );
}

#[test]
fn hub_references() {
    let want = |s| {
        ImageSource::Hub(HubRef {
            repo: "tools/sensor".into(),
            selector: s,
        })
    };
    assert_eq!(r("hub:tools/sensor:1.0").source(), &want(tag("1.0")));
    assert_eq!(r("hub:tools/sensor").source(), &want(Selector::Default));
    let pinned = r(&format!("hub:tools/sensor@{}", digest()));
    assert_eq!(pinned.source(), &want(Selector::Digest(digest())));
    assert_eq!(pinned.digest(), Some(&digest()));
    assert_eq!(r("hub:tools/sensor:1.0").digest(), None);
}

/// Found by `fuzz/` (target `strings`): a 1,017-character name with a short tag parsed,
/// and pinning it gave 1,089 characters, which `ImageRef::new` then refused.
#[test]
fn a_name_too_long_to_pin_is_refused_up_front() {
    // 470 one-letter labels and "examples": a 948-character host (labels are <= 63).
    let host = format!("{}examples", "h.".repeat(470));
    let longest = format!("{host}/app");
    assert_eq!(longest.len(), 1024 - 72);
    let pinned = r(&format!("{longest}:1")).with_digest(&digest());
    assert_eq!(pinned.as_str().len(), 1024);
    assert_eq!(pinned, r(pinned.as_str()));
    let over = format!("h{longest}:1");
    assert_eq!(ImageRef::new(over.as_str()), Err(ImageRefError::TooLong));
    assert_eq!(
        ImageRef::new(format!("oci:/{}:t", "d".repeat(1000))),
        Err(ImageRefError::TooLong)
    );
}

#[test]
fn with_digest_pins_and_drops_the_tag() {
    let d = digest();
    for (from, to) in [
        ("hub:sensor:1.0", format!("hub:sensor@{d}")),
        ("hub:sensor", format!("hub:sensor@{d}")),
        ("nginx:1", format!("nginx@{d}")),
        ("reg.local:5000/a/b:t", format!("reg.local:5000/a/b@{d}")),
        ("oci:/a:b/app:t", format!("oci:/a:b/app@{d}")),
    ] {
        let pinned = r(from).with_digest(&d);
        assert_eq!(pinned.as_str(), to);
        assert_eq!(pinned, r(&to), "{from}");
    }
    let other = Digest::of(b"other");
    let twice = r("hub:sensor:1.0").with_digest(&d).with_digest(&other);
    assert_eq!(twice.as_str(), format!("hub:sensor@{other}"));
}

#[test]
fn typos_and_bad_parts_are_refused_clearly() {
    let err = |s: &str| ImageRef::new(s).unwrap_err();
    assert_eq!(
        err("Nginx:1"),
        ImageRefError::Repository {
            reference: "Nginx:1".into(),
            repo: "Nginx".into()
        }
    );
    assert!(
        err("Nginx:1")
            .to_string()
            .contains("repository \"Nginx\" is not valid")
    );
    assert_eq!(err(""), ImageRefError::Empty);
    assert!(matches!(err("docker://busybox"), ImageRefError::Url(_)));
    assert!(matches!(err("nginx :1"), ImageRefError::BadChar(_)));
    assert!(matches!(err(&"a".repeat(2000)), ImageRefError::TooLong));
    for bad_repo in [
        "reg.local//app",
        "a___b",
        "-a",
        "a-",
        "hub:",
        "hub:A",
        "x/.y",
        "é",
    ] {
        assert!(
            matches!(err(bad_repo), ImageRefError::Repository { .. }),
            "{bad_repo}"
        );
    }
    let long_repo = format!("a/{}", "b".repeat(254));
    assert!(matches!(err(&long_repo), ImageRefError::Repository { .. }));
    for bad_tag in [
        "reg.local/app:",
        "app:.x",
        "app:-x",
        "oci:/img/app:",
        "oci::",
    ] {
        assert!(
            matches!(err(bad_tag), ImageRefError::Tag { .. }),
            "{bad_tag}"
        );
    }
    assert!(matches!(
        err(&format!("app:{}", "t".repeat(129))),
        ImageRefError::Tag { .. }
    ));
    for bad_host in [
        "reg.local:99999/app",
        "reg.local:0/app",
        "-reg.x/app",
        "[zz]:5/a",
        "[::1]5/a",
    ] {
        assert!(
            matches!(err(bad_host), ImageRefError::Host { .. }),
            "{bad_host}"
        );
    }
    for bad_digest in ["app@sha256:short", "hub:a@", "oci:/x@sha256:00"] {
        assert!(
            matches!(err(bad_digest), ImageRefError::Digest { .. }),
            "{bad_digest}"
        );
    }
    let sha512 = err(&format!("hub:a@sha512:{}", "0".repeat(128))).to_string();
    assert!(sha512.contains("only sha256"), "{sha512}");
    assert!(matches!(err("oci:"), ImageRefError::EmptyLayout(_)));
    assert!(matches!(err("oci::t"), ImageRefError::EmptyLayout(_)));
    // A `/` after the last `:` makes it part of the path, not a tag.
    assert_eq!(
        oci("oci:/img/app:bad/tag"),
        ("/img/app:bad/tag".into(), Selector::Default)
    );
}

#[test]
fn serde_is_the_plain_string() {
    let image = r("hub:sensor:1.0");
    let as_ref = postcard::to_stdvec(&image).unwrap();
    let as_string = postcard::to_stdvec(&"hub:sensor:1.0".to_string()).unwrap();
    assert_eq!(as_ref, as_string, "the wire encoding is unchanged");
    assert_eq!(postcard::from_bytes::<ImageRef>(&as_ref).unwrap(), image);
    let bad = postcard::to_stdvec(&"Nginx:1".to_string()).unwrap();
    assert!(postcard::from_bytes::<ImageRef>(&bad).is_err());
    let json = serde_json::to_string(&image).unwrap();
    assert_eq!(json, "\"hub:sensor:1.0\"");
    assert!(serde_json::from_str::<ImageRef>("\"Nginx:1\"").is_err());
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,4}((\\.|_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
}

fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}".prop_map(|t| format!(":{t}")),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| format!("@{}", Digest::of(&b))),
    ]
}

fn repo() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..4).prop_map(|c| c.join("/"))
}

fn valid_reference() -> impl Strategy<Value = String> {
    // Without a host, a first component with a `.` would be read as one.
    let first = "[a-z0-9]{1,4}((_|__|-{1,2})[a-z0-9]{1,4}){0,2}/";
    let host = prop_oneof![
        first.prop_map(|f| f.to_string()),
        Just("localhost/".to_string()),
        (
            "[a-z][a-z0-9-]{0,8}[a-z0-9]\\.[a-z]{2,4}",
            prop::option::of(1u16..)
        )
            .prop_map(|(h, p)| p.map_or(format!("{h}/"), |p| format!("{h}:{p}/"))),
    ];
    let path = "/[a-zA-Z0-9_.-]{1,10}(/[a-zA-Z0-9_.-]{1,10}){0,3}";
    prop_oneof![
        (host, repo(), selector()).prop_map(|(h, r, s)| format!("{h}{r}{s}")),
        (repo(), selector()).prop_map(|(r, s)| format!("hub:{r}{s}")),
        (path, selector()).prop_map(|(p, s)| format!("oci:{p}{s}")),
    ]
}

proptest! {
    #[test]
    fn garbage_never_panics(s in ".{0,120}") {
        if let Ok(image) = ImageRef::new(s.as_str()) {
            prop_assert_eq!(ImageRef::new(image.to_string()), Ok(image));
        }
    }

    #[test]
    fn garbage_in_every_form_never_panics(prefix in "(oci:|hub:|[a-z.]{0,6}/)?", s in "[ -~]{0,60}") {
        let _ = ImageRef::new(format!("{prefix}{s}"));
    }

    #[test]
    fn display_parse_round_trip(s in valid_reference()) {
        let image = ImageRef::new(s.as_str());
        prop_assert!(image.is_ok(), "{s}: {image:?}");
        let image = image.unwrap();
        prop_assert_eq!(image.as_str(), s.as_str());
        prop_assert_eq!(ImageRef::new(image.to_string()), Ok(image.clone()));
        let pinned = image.with_digest(&Digest::of(s.as_bytes()));
        prop_assert_eq!(ImageRef::new(pinned.to_string()), Ok(pinned));
    }
}
