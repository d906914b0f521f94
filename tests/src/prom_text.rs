//! A strict parser of the Prometheus text exposition format (version 0.0.4), for checking
//! what the hub's `/metrics` serves independently of the library that wrote it.
//!
//! It accepts the canonical spacing client libraries write (single spaces between the
//! name, value and timestamp; none inside label sets) and is otherwise strict where the
//! format is: metric and label name syntax, label value escapes, values
//! (Go float syntax with `NaN`/`+Inf`/`-Inf`), optional integer timestamps, at most one
//! `# HELP` and one `# TYPE` per family, `# TYPE` before the family's first sample, every
//! family's samples in one group, no series twice, no label twice in a sample, the final
//! newline; histograms with `_bucket{le}` (cumulative, ending at `+Inf` equal to
//! `_count`), `_sum` and `_count`.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metric family: its declared type and help, and its samples in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// A parsed exposition: families by name.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Every sample named `name` (a histogram's `_bucket`, `_sum`, `_count` included).
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .values()
            .flat_map(|f| f.samples.iter())
            .filter(move |s| s.name == name)
    }

    /// Every sample name in the body.
    pub fn sample_names(&self) -> BTreeSet<String> {
        let all = self.families.values().flat_map(|f| f.samples.iter());
        all.map(|s| s.name.clone()).collect()
    }
}

/// Parses `text`; the error names the line and what was expected.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the body does not end with a newline".into());
    }
    let mut p = Parser::default();
    for (i, line) in text.lines().enumerate() {
        p.line(line)
            .map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?;
    }
    for (name, f) in &p.out.families {
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
    }
    Ok(p.out)
}

#[derive(Default)]
struct Parser {
    out: Exposition,
    /// Families whose group of lines has ended.
    closed: BTreeSet<String>,
    current: Option<String>,
    series: BTreeSet<(String, Vec<(String, String)>)>,
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('#') {
            return self.comment(rest);
        }
        let sample = sample(line)?;
        let family = self.family_of(&sample.name);
        self.enter(&family)?;
        let key = (
            sample.name.clone(),
            sample.labels.clone().into_iter().collect(),
        );
        if !self.series.insert(key) {
            return Err("the same series twice".into());
        }
        self.out
            .families
            .entry(family)
            .or_default()
            .samples
            .push(sample);
        Ok(())
    }

    fn comment(&mut self, rest: &str) -> Result<(), String> {
        let mut words = rest.trim_start_matches(' ').splitn(3, ' ');
        let (kw, name, tail) = (words.next(), words.next(), words.next());
        let (Some(kw @ ("HELP" | "TYPE")), Some(name)) = (kw, name) else {
            return Ok(()); // An ordinary comment.
        };
        check_metric_name(name)?;
        self.enter(name)?;
        let f = self.out.families.entry(name.to_owned()).or_default();
        if kw == "HELP" {
            if f.help.is_some() {
                return Err("a second HELP".into());
            }
            f.help = Some(unescape(tail.unwrap_or(""), false)?);
            return Ok(());
        }
        let kind = tail.unwrap_or("");
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            return Err(format!("unknown type {kind:?}"));
        }
        if !f.kind.is_empty() || !f.samples.is_empty() {
            return Err("TYPE after the family's samples or a second TYPE".into());
        }
        f.kind = kind.to_owned();
        Ok(())
    }

    /// Moves to `family`'s group; a family may not come back once another started.
    fn enter(&mut self, family: &str) -> Result<(), String> {
        if self.current.as_deref() == Some(family) {
            return Ok(());
        }
        if self.closed.contains(family) {
            return Err(format!("family {family} is split into two groups"));
        }
        if let Some(prev) = self.current.replace(family.to_owned()) {
            self.closed.insert(prev);
        }
        Ok(())
    }

    /// A histogram's or summary's suffixed samples belong to the declared base family.
    fn family_of(&self, name: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                let declared = self.out.families.get(base).map(|f| f.kind.as_str());
                if matches!(declared, Some("histogram" | "summary")) {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    }
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let ok = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !ok {
        return Err(format!("bad metric name {name:?}"));
    }
    Ok(())
}

fn check_label_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !ok || name.starts_with("__") {
        return Err(format!("bad label name {name:?}"));
    }
    Ok(())
}

/// `name[{labels}] value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(['{', ' '])
        .ok_or("expected a value after the name")?;
    let name = &line[..end];
    check_metric_name(name)?;
    let (labels, rest) = if line[end..].starts_with('{') {
        labels(&line[end + 1..])?
    } else {
        (BTreeMap::new(), &line[end..])
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected a space before the value")?;
    let mut parts = rest.split(' ');
    let value = float(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("extra fields after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The label pairs after `{`, and the rest of the line after `}`.
fn labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let eq = s.find('=').ok_or("expected label=\"value\"")?;
        let name = &s[..eq];
        check_label_name(name)?;
        let body = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("expected a quoted label value")?;
        let close = closing_quote(body)?;
        let value = unescape(&body[..close], true)?;
        if out.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        s = &body[close + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn closing_quote(body: &str) -> Result<usize, String> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Ok(i),
            _ => {}
        }
    }
    Err("unterminated label value".into())
}

/// HELP text escapes `\\` and `\n`; label values also `\"`.
fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

fn float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            Err(format!("bad value {s:?}"))
        }
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

type LabelPairs = Vec<(String, String)>;

fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    // Bucket (le, cumulative count) pairs by the other labels.
    let mut groups: BTreeMap<LabelPairs, Vec<(f64, f64)>> = BTreeMap::new();
    for s in f
        .samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket"))
    {
        let le = s
            .labels
            .get("le")
            .ok_or(format!("{name}_bucket without le"))?;
        let rest = s.labels.iter().filter(|(k, _)| *k != "le");
        let key = rest.map(|(k, v)| (k.clone(), v.clone())).collect();
        groups.entry(key).or_default().push((float(le)?, s.value));
    }
    if groups.is_empty() {
        return Err(format!("histogram {name} has no buckets"));
    }
    for (labels, buckets) in groups {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let ordered = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last().copied().unwrap_or((0.0, 0.0));
        let count = f
            .samples
            .iter()
            .find(|s| s.name == format!("{name}_count") && same(&s.labels, &pairs))
            .map(|s| s.value);
        let has_sum = f.samples.iter().any(|s| s.name == format!("{name}_sum"));
        if !ordered || last.0 != f64::INFINITY || count != Some(last.1) || !has_sum {
            return Err(format!(
                "histogram {name}{labels:?}: buckets must rise to le=\"+Inf\" equal to _count, with a _sum"
            ));
        }
    }
    Ok(())
}

fn same(labels: &BTreeMap<String, String>, pairs: &[(&str, &str)]) -> bool {
    labels.len() == pairs.len()
        && pairs
            .iter()
            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}
