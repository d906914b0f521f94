//! Guards the retained desired states on the broker. The hub subscribes to every
//! device's `…/desired` topic: its own publishes come back unchanged and are ignored;
//! anything else — a registered device (or anyone with a broker login) overwriting or
//! deleting another device's retained state — is counted (`desired_overwritten`), noted
//! as an event, and the genuine signed state is published again at once (at most once a
//! second per device, so a rogue publishing in a loop cannot make the hub flood the
//! broker). A device that (re)connects after that gets the genuine state, not the forged
//! one; an agent that received the forged one kept what it held (the signature failed).
//! Must never trust what it reads there: it only compares bytes with `payloads`.

use drover_protocol::Name;
use drover_protocol::topics;

use super::core::Controller;
use crate::controller::{Out, Publish};
use crate::store::{Event, EventReason};

/// A device's retained state is published again at most this often.
pub(super) const REPUBLISH_EVERY_MS: u64 = 1_000;

/// `get stats` key of the retained desired states found overwritten.
pub(super) const OVERWRITTEN: &str = "desired_overwritten";

impl Controller {
    /// Whether `payload`, seen on `device`'s desired topic, is something other than the
    /// hub's own last publish there: a different message, or a deletion (empty payload)
    /// of a state the hub holds. Names of no registered device are ignored (no agent
    /// listens there).
    pub(super) fn retained_overwritten(&self, device: &str, payload: &[u8]) -> Option<Name> {
        let name = Name::new(device).ok()?;
        if !self.creds.read().ok()?.contains_key(device) {
            return None;
        }
        match self.payloads.get(&name) {
            Some(genuine) if genuine.as_slice() == payload => None,
            None if payload.is_empty() => None,
            _ => Some(name),
        }
    }

    /// Publishes the genuine state again (or clears the topic when the hub holds none)
    /// for each device found overwritten; returns the events to store.
    pub(super) fn restore_retained(&mut self, devices: &[Name], at_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for name in devices {
            if !self.republish_limit.allow(name.as_str(), at_ms) {
                continue;
            }
            let payload = self.payloads.get(name).cloned().unwrap_or_default();
            let _ = self.outbox.send(Out::Publish(Publish {
                topic: topics::desired(name),
                payload,
            }));
            if self.warn_limit.allow(name.as_str(), at_ms) {
                tracing::warn!(device = %name, "the retained desired state of this device was overwritten on the broker by someone else; published the genuine one again (further ones for a minute are only counted)");
                let msg = "retained desired state overwritten on the broker by someone else; \
                           the genuine one was published again";
                events.push(Event::device(
                    at_ms,
                    name.as_str(),
                    EventReason::Rejected,
                    msg,
                ));
            }
        }
        events
    }
}
