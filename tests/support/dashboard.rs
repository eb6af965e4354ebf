//! The Grafana dashboards (charts/ganeti-operator/dashboards/*.json): their
//! PromQL queries, and the metric names and label matchers they use.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The operations dashboard.
pub const PATH: &str = "charts/ganeti-operator/dashboards/ganeti-operator.json";
/// The service statistics dashboard (applications, owners, quotas).
pub const STATISTICS: &str = "charts/ganeti-operator/dashboards/service-statistics.json";
/// Every dashboard the chart ships.
pub const ALL: [&str; 2] = [PATH, STATISTICS];

pub fn load() -> Value {
    load_from(PATH)
}

pub fn load_from(path: &str) -> Value {
    let text = std::fs::read_to_string(super::repo_path(path)).expect("the dashboard exists");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// One query: where it is (panel title or variable name) and its PromQL.
#[derive(Debug, Clone)]
pub struct Query {
    pub place: String,
    pub expr: String,
}

/// Every PromQL expression of the dashboard: panel targets (rows included) and the
/// template variables' queries.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    fn panels(list: &Value, out: &mut Vec<Query>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("(untitled)").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        place: title.clone(),
                        expr: expr.to_string(),
                    });
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        // label_values(metric, label) and query_result(<PromQL>) name metrics too.
        let expr = q
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(',').map(|(m, _)| m.to_string()))
            .or_else(|| {
                q.strip_prefix("query_result(")
                    .and_then(|r| r.strip_suffix(')'))
                    .map(String::from)
            })
            .unwrap_or_else(|| q.to_string());
        out.push(Query {
            place: format!("variable {}", v["name"].as_str().unwrap_or_default()),
            expr,
        });
    }
    out
}

/// Grafana's variables replaced by values Prometheus accepts, for syntax checks.
pub fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("${cluster}", ".*")
        .replace("$cluster", ".*")
}

/// The metric names a PromQL expression selects, each with the label names of its
/// matchers (`name{label=~"..."}`). Functions, aggregations, keywords, grouping label
/// lists, strings, durations and numbers are not metric names.
pub fn selectors(expr: &str) -> Vec<(String, BTreeSet<String>)> {
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
        // Aggregations, whose `by (...)` may come before their argument.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ];
    const LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    // Index after the bracket closing the one at `j`.
    let close = |j: usize, open: char, shut: char| {
        let mut depth = 0;
        let mut k = j;
        let mut quote: Option<char> = None;
        while k < chars.len() {
            let c = chars[k];
            match quote {
                Some(_) if c == '\\' => k += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == shut => {
                    depth -= 1;
                    if depth == 0 {
                        return k + 1;
                    }
                }
                None => {}
            }
            k += 1;
        }
        panic!("unbalanced {open} in {expr}");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let mut k = i + 1;
            while k < chars.len() && chars[k] != c {
                if chars[k] == '\\' {
                    k += 1;
                }
                k += 1;
            }
            i = k + 1;
        } else if c == '[' {
            i = close(i, '[', ']');
        } else if c == '{' {
            // A selector without a name ({__name__=...}) is not used here.
            i = close(i, '{', '}');
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            let lower = word.to_ascii_lowercase();
            if LIST_KEYWORDS.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = close(next, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) || chars.get(next) == Some(&'(') {
                // A keyword, or a function/aggregation call.
            } else {
                let mut labels = BTreeSet::new();
                if chars.get(next) == Some(&'{') {
                    let end = close(next, '{', '}');
                    let body: String = chars[next + 1..end - 1].iter().collect();
                    labels = matcher_labels(&body);
                    i = end;
                }
                out.push((word, labels));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The label names of a matcher list `a="x", b=~"y"`.
fn matcher_labels(body: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some(op) = rest.find(['=', '!']) else { break };
        labels.insert(rest[..op].trim().to_string());
        // Skip the operator and the quoted value.
        let Some(q) = rest[op..].find(['"', '\'', '`']).map(|q| q + op) else {
            break;
        };
        let quote = rest.as_bytes()[q] as char;
        let mut k = q + 1;
        let bytes = rest.as_bytes();
        while k < bytes.len() && bytes[k] as char != quote {
            if bytes[k] == b'\\' {
                k += 1;
            }
            k += 1;
        }
        rest = &rest[(k + 1).min(rest.len())..];
    }
    labels
}

/// Every sample name in a Prometheus text exposition, with the union of its label names.
pub fn scrape_labels(metrics: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let entry = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{')
            && let Some(close) = line.rfind('}')
        {
            entry.extend(matcher_labels(&line[end + 1..close]));
        }
    }
    out
}
