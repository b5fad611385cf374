//! Holding one API call of a simulator at a chosen point, so that a test can act on a side
//! exactly between tagsync's read and its write (or between a write and its answer): arm a
//! hold, wait until the simulator says a matching call is held, act, release. Nothing sleeps:
//! the simulator tells when the call arrived, and the call goes on when it is released.
//!
//! Both simulators keep armed holds beside their injected faults ([`Trap`]); tests get a
//! [`Hold`] (Rust) or use the `/control/holds` routes ([`Registry`]).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// A held call goes on by itself after this long, so a test that forgets one cannot hang the
/// simulator for good.
pub const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// Where a held call waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the call takes effect: whatever the test does meanwhile happens first.
    #[default]
    Before,
    /// After the call took effect, before its answer goes back.
    After,
}

/// A call being held: what it asked. It goes on when this is released or dropped.
#[derive(Debug)]
pub struct Held {
    /// The request as the simulator logs it (WeCom: the JSON body or the query without
    /// secrets; the mall: `{"method", "path", "body"}`).
    pub request: Value,
    release: Option<oneshot::Sender<()>>,
}

impl Held {
    /// Lets the call go on.
    pub fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
    }
}

/// An armed hold, as the test holds it. Dropping it before a call was held disarms it.
#[derive(Debug)]
pub struct Hold {
    rx: Option<oneshot::Receiver<Held>>,
}

impl Hold {
    /// Waits until a matching call is held, at most `within`.
    pub async fn held(&mut self, within: Duration) -> Result<Held, String> {
        let Some(rx) = self.rx.as_mut() else {
            return Err("this hold was used already".into());
        };
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(held)) => {
                self.rx = None;
                Ok(held)
            }
            Ok(Err(_)) => Err("the simulator dropped the hold (it stopped)".into()),
            Err(_) => Err(format!("no matching call was held within {within:?}")),
        }
    }

    /// The held call, if one is held now (does not wait).
    pub fn try_held(&mut self) -> Option<Held> {
        let held = self.rx.as_mut()?.try_recv().ok()?;
        self.rx = None;
        Some(held)
    }
}

/// The simulator's side of an armed hold.
#[derive(Debug)]
pub struct Trap {
    pub phase: Phase,
    /// Fields the request must have (a JSON subset: an object matches when each of its fields
    /// matches; `null` matches anything).
    pub matching: Value,
    tx: oneshot::Sender<Held>,
}

/// Arms a hold: the simulator keeps the [`Trap`], the test the [`Hold`].
pub fn arm(phase: Phase, matching: Value) -> (Trap, Hold) {
    let (tx, rx) = oneshot::channel();
    (
        Trap {
            phase,
            matching,
            tx,
        },
        Hold { rx: Some(rx) },
    )
}

impl Trap {
    /// The test dropped its [`Hold`]: nothing to hold any more.
    pub fn disarmed(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn matches(&self, phase: Phase, request: &Value) -> bool {
        self.phase == phase && !self.disarmed() && subset(&self.matching, request)
    }

    /// Holds the call: tells the test, then waits for its release (or [`HOLD_LIMIT`]).
    pub async fn spring(self, request: Value) {
        let (release, released) = oneshot::channel();
        let held = Held {
            request,
            release: Some(release),
        };
        if self.tx.send(held).is_err() {
            return;
        }
        // A dropped `Held` releases too (the receiver sees the sender gone).
        let _ = tokio::time::timeout(HOLD_LIMIT, released).await;
    }
}

/// Takes the first trap in `traps` that matches, dropping disarmed ones on the way.
pub fn take_trap<K: PartialEq>(
    traps: &mut Vec<(K, Trap)>,
    key: impl Fn(&K) -> bool,
    phase: Phase,
    request: &Value,
) -> Option<Trap> {
    traps.retain(|(_, t)| !t.disarmed());
    let at = traps
        .iter()
        .position(|(k, t)| key(k) && t.matches(phase, request))?;
    Some(traps.remove(at).1)
}

/// `pattern` ⊆ `value`: objects field by field, `null` as a wildcard, anything else equal.
pub fn subset(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Null => true,
        Value::Object(fields) => fields
            .iter()
            .all(|(k, p)| subset(p, value.get(k).unwrap_or(&Value::Null))),
        other => other == value,
    }
}

/// Holds armed through a simulator's JSON control surface, by number: `POST
/// /control/holds` arms one, `POST /control/holds/{id}/wait` waits until its call is held
/// (answering the request), `POST /control/holds/{id}/release` lets it go on.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    next: u64,
    by_id: HashMap<u64, Slot>,
}

#[derive(Debug)]
enum Slot {
    Armed(Hold),
    /// A `wait` request has the hold meanwhile.
    Waiting,
    Held(Held),
}

impl Registry {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, hold: Hold) -> u64 {
        let mut s = self.slots();
        s.next += 1;
        let id = s.next;
        s.by_id.insert(id, Slot::Armed(hold));
        id
    }

    /// Waits (at most `within`) until hold `id`'s call is held: `{"held": true, "request"}`,
    /// or `{"held": false}` at the deadline. `Err` for an unknown id or a second waiter.
    pub async fn wait(&self, id: u64, within: Duration) -> Result<Value, String> {
        let mut hold = {
            let mut s = self.slots();
            match s.by_id.remove(&id) {
                None => return Err(format!("no hold {id}")),
                Some(Slot::Held(h)) => {
                    let answer = json!({"held": true, "request": h.request});
                    s.by_id.insert(id, Slot::Held(h));
                    return Ok(answer);
                }
                Some(Slot::Waiting) => {
                    s.by_id.insert(id, Slot::Waiting);
                    return Err(format!("hold {id} is being waited for"));
                }
                Some(Slot::Armed(hold)) => {
                    s.by_id.insert(id, Slot::Waiting);
                    hold
                }
            }
        };
        let outcome = hold.held(within).await;
        let mut s = self.slots();
        let answer = match outcome {
            Ok(h) => {
                let answer = json!({"held": true, "request": h.request});
                s.by_id.insert(id, Slot::Held(h));
                answer
            }
            Err(_) => {
                s.by_id.insert(id, Slot::Armed(hold));
                json!({"held": false})
            }
        };
        Ok(answer)
    }

    /// Releases hold `id`'s call, or disarms it if nothing was held yet.
    pub fn release(&self, id: u64) -> Result<(), String> {
        let mut s = self.slots();
        match s.by_id.remove(&id) {
            Some(Slot::Held(h)) => {
                h.release();
                Ok(())
            }
            Some(Slot::Armed(_)) => Ok(()),
            Some(Slot::Waiting) => {
                // The waiter puts it back; disarm it then by dropping what it returns.
                s.by_id.insert(id, Slot::Waiting);
                Err(format!(
                    "hold {id} is being waited for; release it after the wait"
                ))
            }
            None => Err(format!("no hold {id}")),
        }
    }
}

/// `POST /control/holds`' body beyond what names the call (each simulator adds its own).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ControlHold {
    pub phase: Phase,
    #[serde(rename = "match")]
    pub matching: Value,
}

/// `POST /control/holds/{id}/wait`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ControlWait {
    pub timeout_ms: Option<u64>,
}

impl ControlWait {
    /// At most 30 s per request (a client waits longer by asking again).
    pub fn within(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(5_000).min(30_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_matches_fields_and_treats_null_as_anything() {
        let v = json!({"userid": "u1", "add_tag": ["a"], "n": 2});
        assert!(subset(&Value::Null, &v));
        assert!(subset(&json!({"userid": "u1"}), &v));
        assert!(subset(&json!({"userid": "u1", "n": 2}), &v));
        assert!(!subset(&json!({"userid": "u2"}), &v));
        assert!(!subset(&json!({"missing": "x"}), &v));
        assert!(subset(&json!({"missing": null}), &v));
    }

    #[tokio::test]
    async fn a_held_call_waits_for_its_release() {
        let (trap, mut hold) = arm(Phase::Before, json!({"userid": "u1"}));
        assert!(!trap.matches(Phase::After, &json!({"userid": "u1"})));
        assert!(!trap.matches(Phase::Before, &json!({"userid": "u2"})));
        assert!(trap.matches(Phase::Before, &json!({"userid": "u1"})));
        let call = tokio::spawn(trap.spring(json!({"userid": "u1"})));
        let held = hold.held(Duration::from_secs(5)).await.unwrap();
        assert_eq!(held.request["userid"], "u1");
        assert!(!call.is_finished(), "the call waits while held");
        held.release();
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("released calls go on")
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_hold_disarms_its_trap() {
        let (trap, hold) = arm(Phase::Before, Value::Null);
        drop(hold);
        assert!(trap.disarmed());
        let mut traps = vec![("op", trap)];
        assert!(take_trap(&mut traps, |k| *k == "op", Phase::Before, &Value::Null).is_none());
        assert!(traps.is_empty(), "disarmed traps are dropped");
    }

    #[tokio::test]
    async fn the_registry_waits_and_releases_by_number() {
        let r = Registry::default();
        let (trap, hold) = arm(Phase::Before, Value::Null);
        let id = r.add(hold);
        let idle = r.wait(id, Duration::from_millis(20)).await.unwrap();
        assert_eq!(idle["held"], false);
        let call = tokio::spawn(trap.spring(json!({"x": 1})));
        let held = r.wait(id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(held, json!({"held": true, "request": {"x": 1}}));
        r.release(id).unwrap();
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("released")
            .unwrap();
        assert!(r.release(id).is_err(), "a released hold is gone");
    }
}
