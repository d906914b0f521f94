use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use axum::middleware;
use axum::routing::get;
use tower::ServiceExt;

use super::access::{ApiAccess, COOKIE, api_access};
use super::*;

const ADMIN: &str = "admin0123456789abcdef";
const TOKEN: &str = "read0123456789abcdef";

/// Sends `method target` from `peer` with `headers` through `app`.
async fn send(
    app: Router,
    peer: &str,
    method: Method,
    target: &str,
    headers: &[(header::HeaderName, String)],
) -> Response {
    let mut req = Request::builder().method(method).uri(target);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(Body::empty()).expect("request");
    let peer: SocketAddr = peer.parse().expect("peer");
    req.extensions_mut().insert(ConnectInfo(peer));
    app.oneshot(req).await.expect("infallible")
}

async fn body(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The read token as a header.
fn reader() -> Vec<(header::HeaderName, String)> {
    vec![(header::AUTHORIZATION, format!("Bearer {TOKEN}"))]
}

/// The pages and a read/write route, behind the access rule, as `api::router` builds it.
fn app() -> Router {
    let tokens = crate::api::token::Tokens {
        admin: ADMIN.to_owned(),
        read: TOKEN.to_owned(),
    };
    let rw = Router::new().route(
        "/v1/things",
        get(|| async { "read" }).post(|| async { "wrote" }),
    );
    pages()
        .merge(rw)
        .route_layer(middleware::from_fn_with_state(
            ApiAccess::new(&tokens, "", std::path::Path::new("/srv/hub")),
            api_access,
        ))
}

#[test]
fn every_asset_the_page_or_a_script_names_is_embedded() {
    let text = |a: &Asset| std::str::from_utf8(a.body).expect("utf-8").to_owned();
    let mut named: Vec<String> = Vec::new();
    let mut collect = |text: &str, marker: &str| {
        for rest in text.split(marker).skip(1) {
            named.push(rest.split(['"', '\'']).next().unwrap_or("").to_owned());
        }
    };
    collect(&text(&INDEX), "/assets/");
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        collect(&text(a), "from './");
    }
    named.sort_unstable();
    named.dedup();
    assert!(named.len() >= 7, "{named:?}");
    for name in &named {
        assert!(asset(name).is_some(), "{name} is named but not embedded");
    }
    // And nothing embedded is dead weight.
    for a in ASSETS {
        assert!(
            named.iter().any(|n| n == a.name),
            "{} is embedded but never named",
            a.name
        );
    }
    assert_eq!(asset("../Cargo.toml"), None);
    assert_eq!(asset(""), None);
}

#[test]
fn no_script_parses_text_as_html() {
    // Device names, messages and container logs reach the page; they must only ever be
    // text nodes (util.js `h`, `textContent`), never markup.
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let text = std::str::from_utf8(a.body).expect("utf-8");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "DOMParser",
            "createContextualFragment",
            "eval(",
            "new Function",
        ] {
            assert!(!text.contains(sink), "{} uses {sink}", a.name);
        }
    }
}

#[tokio::test]
async fn the_page_and_assets_are_served_with_their_types_and_policy() {
    let res = send(app(), "127.0.0.1:9", Method::GET, "/", &reader()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(
        res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(
        body(res)
            .await
            .contains("<script type=\"module\" src=\"/assets/app.js\">")
    );
    let res = send(
        app(),
        "127.0.0.1:9",
        Method::GET,
        "/assets/style.css",
        &reader(),
    )
    .await;
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    let res = send(
        app(),
        "127.0.0.1:9",
        Method::GET,
        "/assets/nope.js",
        &reader(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = send(
        app(),
        "127.0.0.1:9",
        Method::GET,
        "/assets/..%2Fmod.rs",
        &reader(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_route_needs_a_token_and_the_read_token_never_writes() {
    let bearer = |t: &str| vec![(header::AUTHORIZATION, format!("Bearer {t}"))];
    for peer in ["127.0.0.1:9", "192.0.2.9:40000"] {
        for (method, target) in [(Method::GET, "/v1/things"), (Method::GET, "/")] {
            let res = send(app(), peer, method, target, &[]).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{peer} {target}");
            assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
            let text = body(res).await;
            // Only loopback peers learn where the data folder is.
            let dir = match peer.starts_with("127.") {
                true => "/srv/hub/api.token",
                false => "<data_dir>/api.token",
            };
            assert!(text.contains(dir), "{text}");
            assert_eq!(
                text.contains("/srv/hub"),
                peer.starts_with("127."),
                "{text}"
            );
        }
        let res = send(app(), peer, Method::GET, "/v1/things", &bearer("nope")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = send(app(), peer, Method::GET, "/v1/things", &bearer(TOKEN)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body(res).await, "read");
        let res = send(app(), peer, Method::POST, "/v1/things", &bearer(TOKEN)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(body(res).await.contains("read-only token cannot change"));
    }
    let remote = "192.0.2.9:40000";
    let res = send(app(), remote, Method::POST, "/v1/things", &bearer(ADMIN)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(body(res).await.contains("only from loopback"));
    let res = send(app(), "127.0.0.1:9", Method::POST, "/v1/things", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let local = "127.0.0.1:9";
    let res = send(app(), local, Method::POST, "/v1/things", &bearer(ADMIN)).await;
    assert_eq!(body(res).await, "wrote");
}

#[tokio::test]
async fn a_browser_logs_in_once_with_the_token_in_the_address() {
    let remote = "[2001:db8::1]:40000";
    let res = send(app(), remote, Method::GET, &format!("/?token={TOKEN}"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/");
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let jar = cookie.split(';').next().expect("pair").to_owned();
    assert_eq!(jar, format!("{COOKIE}={TOKEN}"));
    // Over HTTPS the cookie is Secure: a browser never sends it over plain HTTP.
    let tls = app().layer(axum::Extension(crate::web::access::OverTls));
    let res = send(tls, remote, Method::GET, &format!("/?token={TOKEN}"), &[]).await;
    let cookie = res.headers()[header::SET_COOKIE].to_str().expect("ascii");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let res = send(
        app(),
        remote,
        Method::GET,
        "/assets/app.js",
        &[(header::COOKIE, jar)],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[test]
fn live_event_streams_are_capped() {
    assert_eq!(stream_refusal(0), None);
    assert_eq!(stream_refusal(MAX_EVENT_STREAMS - 1), None);
    let e = stream_refusal(MAX_EVENT_STREAMS).expect("refused at the cap");
    assert!(e.starts_with("64 live event streams are open"), "{e}");
    let events = crate::events::Events::default();
    let readers: Vec<_> = (0..3).map(|_| events.subscribe()).collect();
    assert_eq!(events.readers(), readers.len());
    drop(readers);
    assert_eq!(events.readers(), 0);
}
