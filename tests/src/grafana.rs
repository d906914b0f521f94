//! The metrics a Grafana dashboard queries: every PromQL `expr` of its panels and every
//! `label_values(...)` variable query, reduced to the metric names they select and the
//! label names their matchers use — so that a test can check each against what the hub
//! really exports.
//!
//! A small PromQL scanner, not a full parser: it skips strings, ranges (`[5m]`),
//! Grafana variables (`$device`, `${DS}`), numbers, keywords, functions and aggregation
//! operators with their `by (...)` / `on (...)` label lists; what remains are metric
//! selectors, with the label names of their `{...}` matchers.

use std::collections::BTreeSet;

use serde_json::Value;

/// One metric selector: its name and the label names its matchers use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub metric: String,
    pub labels: BTreeSet<String>,
}

/// Every query string of `dashboard`: `expr` of any object (panel targets, nested rows)
/// and variable queries (`templating.list[].query`, a string or `{query: ...}`).
pub fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = &v["query"];
        if let Some(s) = q.as_str().or_else(|| q["query"].as_str()) {
            out.push(s.to_owned());
        }
    }
    out
}

fn walk(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => walk(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
        _ => {}
    }
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];
/// Aggregation operators: they may be followed by `by (...)` before their parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The selectors of one query. `label_values(metric, label)` (a Grafana variable query)
/// gives `metric` with `label`.
pub fn selectors(query: &str) -> Result<Vec<Selector>, String> {
    let q = query.trim();
    if let Some(args) = q
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let (metric, label) = args
            .rsplit_once(',')
            .ok_or("label_values needs two arguments")?;
        let mut out = selectors(metric)?;
        let last = out.last_mut().ok_or("label_values without a metric")?;
        last.labels.insert(label.trim().to_owned());
        return Ok(out);
    }
    Scanner {
        s: q.as_bytes(),
        i: 0,
    }
    .run()
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn run(mut self) -> Result<Vec<Selector>, String> {
        let mut out: Vec<Selector> = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'"' | b'\'' | b'`' => self.skip_string(c)?,
                b'[' => self.skip_until(b']')?,
                b'$' => self.skip_variable(),
                b'{' => {
                    // Matchers without a name before them (`{__name__=~"…"}`) are not used.
                    let labels = self.matchers()?;
                    let last = out.last_mut().ok_or("a label matcher without a metric")?;
                    last.labels.extend(labels);
                }
                c if c.is_ascii_digit() || c == b'.' => self.skip_number(),
                c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                    let word = self.word();
                    self.classify(word, &mut out)?;
                }
                _ => self.i += 1,
            }
        }
        Ok(out)
    }

    fn classify(&mut self, word: String, out: &mut Vec<Selector>) -> Result<(), String> {
        let next = self.peek_nonblank();
        if matches!(
            word.as_str(),
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            if next == Some(b'(') {
                self.skip_until(b')')?;
            }
            return Ok(());
        }
        if KEYWORDS.contains(&word.as_str()) || AGGREGATIONS.contains(&word.as_str()) {
            return Ok(());
        }
        if next == Some(b'(') {
            return Ok(()); // A function.
        }
        out.push(Selector {
            metric: word,
            labels: BTreeSet::new(),
        });
        // A matcher must follow its name directly.
        if self.s.get(self.i) != Some(&b'{') && next == Some(b'{') {
            return Err("a space between a metric name and its matchers".into());
        }
        Ok(())
    }

    fn word(&mut self) -> String {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn peek_nonblank(&self) -> Option<u8> {
        self.s[self.i..]
            .iter()
            .copied()
            .find(|c| !c.is_ascii_whitespace())
    }

    /// `{name op "value", ...}` → the label names.
    fn matchers(&mut self) -> Result<Vec<String>, String> {
        self.i += 1;
        let mut names = Vec::new();
        loop {
            while matches!(self.s.get(self.i), Some(b' ' | b',')) {
                self.i += 1;
            }
            match self.s.get(self.i) {
                None => return Err("unterminated label matchers".into()),
                Some(b'}') => {
                    self.i += 1;
                    return Ok(names);
                }
                Some(_) => {}
            }
            let name = self.word();
            if name.is_empty() {
                return Err("expected a label name in the matchers".into());
            }
            names.push(name);
            while matches!(self.s.get(self.i), Some(b' ' | b'=' | b'!' | b'~')) {
                self.i += 1;
            }
            match self.s.get(self.i) {
                Some(&q @ (b'"' | b'\'' | b'`')) => self.skip_string(q)?,
                _ => return Err("expected a quoted label value".into()),
            }
        }
    }

    fn skip_string(&mut self, quote: u8) -> Result<(), String> {
        self.i += 1;
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'\\' if quote != b'`' => self.i += 1,
                c if c == quote => return Ok(()),
                _ => {}
            }
        }
        Err("unterminated string".into())
    }

    fn skip_until(&mut self, end: u8) -> Result<(), String> {
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            if c == end {
                return Ok(());
            }
        }
        Err(format!("missing {:?}", end as char))
    }

    fn skip_variable(&mut self) {
        self.i += 1;
        if self.s.get(self.i) == Some(&b'{') {
            let _ = self.skip_until(b'}');
        } else {
            self.word();
        }
    }

    fn skip_number(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            self.i += 1;
        }
    }
}
