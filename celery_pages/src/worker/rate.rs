//! Rate limits, as Celery's worker keeps them: a token bucket per task
//! type (kombu's `TokenBucket`, capacity one), refilled at the task's rate
//! (`"10/s"`, `"100/m"`, `"1/h"`). A task that finds the bucket empty
//! waits, unacked and without a concurrency slot, until its token is due;
//! tasks of other types go on meanwhile.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// A rate in tasks per second, from Celery's spelling: `"10/s"`,
/// `"100/m"`, `"1/h"`, `"5"` (per second), or a number; `None` (or 0) is
/// no limit. An unreadable one is Celery's `ValueError` text.
///
/// ```
/// use celery_pages::worker::rate::per_second;
/// use serde_json::json;
/// assert_eq!(per_second(&json!("10/s")), Ok(Some(10.0)));
/// assert_eq!(per_second(&json!("120/m")), Ok(Some(2.0)));
/// assert_eq!(per_second(&json!(null)), Ok(None));
/// assert!(per_second(&json!("ten/s")).is_err());
/// ```
pub fn per_second(rate: &Value) -> Result<Option<f64>, String> {
    let rate = match rate {
        Value::Null | Value::Bool(false) => return Ok(None),
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(text) if text.is_empty() => return Ok(None),
        Value::String(text) => {
            let (ops, modifier) = text.split_once('/').unwrap_or((text, ""));
            let ops: f64 = ops.trim().parse().map_err(|_| {
                format!("ValueError(\"could not convert string to float: '{ops}'\")")
            })?;
            match modifier {
                "" | "s" => ops,
                "m" => ops / 60.0,
                "h" => ops / 3600.0,
                other => return Err(format!("KeyError('{other}')")),
            }
        }
        other => return Err(format!("ValueError('not a rate: {other}')")),
    };
    Ok((rate.is_finite() && rate > 0.0).then_some(rate))
}

/// One task type's bucket: when its next token is due.
#[derive(Clone, Debug)]
struct Bucket {
    /// The limit as it was given, for `inspect registered`.
    shown: String,
    interval: Duration,
    next: Option<Instant>,
}

/// The worker's rate limits, by task name.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: HashMap<String, Bucket>,
}

impl RateLimits {
    /// Sets task `name`'s limit (`shown` as given, `rate` per second), with
    /// a full bucket, or lifts it (`None`), as Celery resets a bucket.
    pub fn set(&mut self, name: &str, shown: &str, rate: Option<f64>) {
        match rate {
            Some(rate) => {
                let interval = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX);
                let bucket = Bucket {
                    shown: shown.to_owned(),
                    interval,
                    next: None,
                };
                self.buckets.insert(name.to_owned(), bucket);
            }
            None => {
                self.buckets.remove(name);
            }
        }
    }

    /// Whether no task type has a limit.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The limit of task `name`, as given, if it has one.
    pub fn shown(&self, name: &str) -> Option<&str> {
        self.buckets.get(name).map(|bucket| bucket.shown.as_str())
    }

    /// Takes a token for a task `name` received `now`: when it may start
    /// (`now` if a token is there; tokens are taken in arrival order).
    ///
    /// ```
    /// use celery_pages::worker::rate::RateLimits;
    /// use std::time::Duration;
    /// let mut limits = RateLimits::default();
    /// limits.set("t", "2/s", Some(2.0));
    /// let now = tokio::time::Instant::now();
    /// assert_eq!(limits.take("t", now), now);
    /// assert_eq!(limits.take("t", now), now + Duration::from_millis(500));
    /// assert_eq!(limits.take("other", now), now);
    /// ```
    pub fn take(&mut self, name: &str, now: Instant) -> Instant {
        let Some(bucket) = self.buckets.get_mut(name) else {
            return now;
        };
        let start = bucket.next.map_or(now, |next| next.max(now));
        // A rate so low its interval overflows: the next token in a century.
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        bucket.next = start
            .checked_add(bucket.interval.min(century))
            .or(Some(start));
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_rate_a_peer_sets_takes_tokens_without_overflow() {
        let mut limits = RateLimits::default();
        let now = Instant::now();
        for rate in [1e-300, f64::MIN_POSITIVE, 1e300, 1.0] {
            limits.set("t", "x", Some(rate));
            let first = limits.take("t", now);
            let second = limits.take("t", now);
            assert!(first == now && second >= first, "{rate}");
        }
        for text in [
            "1e-300/h", "1e308/s", "-5/m", "nan/s", "inf", "", "/", "5/x",
        ] {
            let _ = per_second(&Value::String(text.into()));
        }
    }
}
