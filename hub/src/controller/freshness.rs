//! Replay protection for statuses and presence: each carries a sequence number under
//! its MAC (`drover_protocol::freshness`); one not above the highest accepted from that
//! device for that kind is dropped and counted as `replayed`. The floors live in
//! `Controller::floors` and are written with the batch that raised them (store table
//! `seq_floors`), so a replay stays refused across hub restarts.

use std::collections::BTreeMap;

use drover_protocol::Name;
use drover_protocol::freshness::is_fresh;

use super::core::Controller;
use super::ingest::RejectReason;
use crate::store::SeqFloors;

/// Which sequence a message is judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SeqKind {
    Status,
    Presence,
}

impl Controller {
    /// Accepts `seq` from `device` as fresh for `kind` and raises the floor (here and in
    /// `raised`, to be stored with the batch); refuses a replay.
    pub(super) fn take_fresh(
        &mut self,
        raised: &mut BTreeMap<Name, SeqFloors>,
        device: &Name,
        seq: Option<u64>,
        kind: SeqKind,
    ) -> Result<(), (RejectReason, String)> {
        let floors = self.floors.entry(device.to_string()).or_default();
        let floor = match kind {
            SeqKind::Status => &mut floors.status,
            SeqKind::Presence => &mut floors.presence,
        };
        if !is_fresh(seq, *floor) {
            let detail = match seq {
                Some(s) => format!("sequence {s} is not above the {floor} already accepted"),
                None => {
                    format!("unsequenced (older agent format) after sequence {floor} was accepted")
                }
            };
            return Err((RejectReason::Replayed, detail));
        }
        if let Some(s) = seq {
            *floor = s;
            raised.insert(device.clone(), *floors);
        }
        Ok(())
    }
}
