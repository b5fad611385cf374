//! Counters of what tagsync did, kept in one place per process: inbound events by outcome,
//! jobs by outcome, WeCom and mall calls by outcome. `tagsync serve` exposes them as Prometheus
//! text (`GET /metrics`); the Lambdas write what changed during an invocation as CloudWatch
//! embedded-metric-format lines on stdout, which CloudWatch turns into metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A counter and its help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
}

/// Inbound callbacks and webhooks; labels `source` (wecom, mall) and `outcome` (queued,
/// duplicate, ignored, refused_4xx/5xx status).
pub const EVENTS: Counter = Counter {
    name: "tagsync_events_total",
    help: "Inbound callbacks and webhooks by source and outcome",
};
/// Jobs settled; labels `kind` and `outcome` (done, retried, parked).
pub const JOBS: Counter = Counter {
    name: "tagsync_jobs_total",
    help: "Jobs settled by kind and outcome",
};
/// WeCom API calls; labels `api` and `outcome` (the classifier's verdict).
pub const WECOM_CALLS: Counter = Counter {
    name: "tagsync_wecom_calls_total",
    help: "WeCom API calls by API and outcome",
};
/// Mall API calls; labels `op` and `outcome` (the classifier's verdict).
pub const MALL_CALLS: Counter = Counter {
    name: "tagsync_mall_calls_total",
    help: "Mall API calls by operation and outcome",
};

type Labels = Vec<(&'static str, String)>;

#[derive(Default, Debug)]
pub struct Metrics {
    /// Totals since the process started (Prometheus).
    totals: Mutex<BTreeMap<(Counter, Labels), u64>>,
    /// Increments not yet written as embedded metrics (Lambda).
    unflushed: Mutex<BTreeMap<(Counter, Labels), u64>>,
}

impl Metrics {
    pub fn incr(&self, counter: Counter, labels: &[(&'static str, &str)]) {
        let key = (
            counter,
            labels
                .iter()
                .map(|(k, v)| (*k, (*v).to_string()))
                .collect::<Labels>(),
        );
        for map in [&self.totals, &self.unflushed] {
            *map.lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_default() += 1;
        }
    }

    /// The current total of one counter and label set (tests, diagnostics).
    pub fn get(&self, counter: Counter, labels: &[(&'static str, &str)]) -> u64 {
        let key = (
            counter,
            labels
                .iter()
                .map(|(k, v)| (*k, (*v).to_string()))
                .collect::<Labels>(),
        );
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self) -> String {
        let totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last: Option<Counter> = None;
        for ((counter, labels), value) in totals.iter() {
            if last != Some(*counter) {
                out.push_str(&format!(
                    "# HELP {} {}\n# TYPE {} counter\n",
                    counter.name, counter.help, counter.name
                ));
                last = Some(*counter);
            }
            let labels = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!("{}{{{labels}}} {value}\n", counter.name));
        }
        out
    }

    /// The increments since the last call, one CloudWatch embedded-metric-format JSON line per
    /// counter and label set (namespace `tagsync`, the labels as dimensions).
    pub fn take_emf(&self, now_ms: i64) -> Vec<String> {
        let drained =
            std::mem::take(&mut *self.unflushed.lock().unwrap_or_else(|p| p.into_inner()));
        drained
            .into_iter()
            .map(|((counter, labels), value)| {
                let metric = counter
                    .name
                    .trim_start_matches("tagsync_")
                    .trim_end_matches("_total");
                let dimensions: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
                let mut line = serde_json::json!({
                    "_aws": {
                        "Timestamp": now_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": "tagsync",
                            "Dimensions": [dimensions],
                            "Metrics": [{"Name": metric, "Unit": "Count"}],
                        }],
                    },
                });
                line[metric] = value.into();
                for (k, v) in labels {
                    line[k] = v.into();
                }
                line.to_string()
            })
            .collect()
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_groups_label_sets_under_one_help_and_type() {
        let m = Metrics::default();
        m.incr(JOBS, &[("kind", "probe"), ("outcome", "done")]);
        m.incr(JOBS, &[("kind", "probe"), ("outcome", "done")]);
        m.incr(JOBS, &[("kind", "probe"), ("outcome", "parked")]);
        m.incr(EVENTS, &[("source", "mall"), ("outcome", "queued")]);
        let text = m.prometheus();
        assert_eq!(text.matches("# TYPE tagsync_jobs_total counter").count(), 1);
        assert!(
            text.contains("tagsync_jobs_total{kind=\"probe\",outcome=\"done\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("tagsync_jobs_total{kind=\"probe\",outcome=\"parked\"} 1\n"));
        assert!(text.contains("tagsync_events_total{source=\"mall\",outcome=\"queued\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.incr(EVENTS, &[("source", "a\"b\\c")]);
        assert!(m.prometheus().contains("source=\"a\\\"b\\\\c\""));
    }

    #[test]
    fn embedded_metrics_carry_the_increments_since_the_last_flush() {
        let m = Metrics::default();
        m.incr(WECOM_CALLS, &[("api", "mark_tag"), ("outcome", "success")]);
        m.incr(WECOM_CALLS, &[("api", "mark_tag"), ("outcome", "success")]);
        let lines = m.take_emf(1_700_000_000_000);
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["wecom_calls"], 2);
        assert_eq!(v["api"], "mark_tag");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "tagsync");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["api", "outcome"])
        );
        assert!(
            m.take_emf(0).is_empty(),
            "flushed increments are not repeated"
        );
        assert_eq!(
            m.get(WECOM_CALLS, &[("api", "mark_tag"), ("outcome", "success")]),
            2,
            "totals stay"
        );
    }
}
