//! The content coding of a `/metrics` answer: whether the scraper takes gzip
//! (`Accept-Encoding`, RFC 9110 §12.5.3) and the compression itself (flate2). Pure; never
//! looks at the metrics.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Whether one `Accept-Encoding` header value accepts gzip: `gzip` or `*` listed without
/// `q=0` (`gzip;q=0` refuses it). Tokens are case-insensitive.
pub fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0)
            })
        });
        (coding == "gzip" || coding == "x-gzip" || coding == "*") && !refused
    })
}

/// `bytes` gzip-compressed at the fast level (a scrape is CPU on the hub; the text
/// compresses about tenfold even so).
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 8), Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_is_accepted_as_prometheus_and_browsers_ask_for_it() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("deflate, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("gzip; q=0.0, identity"));
        assert!(!accepts_gzip(""));
        assert!(!accepts_gzip("gzipped"));
    }

    #[test]
    fn gzip_round_trips() {
        let text = "drover_devices_online 3\n".repeat(1000);
        let z = gzip(text.as_bytes()).unwrap();
        assert!(z.len() < text.len() / 10, "{} of {}", z.len(), text.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }
}
