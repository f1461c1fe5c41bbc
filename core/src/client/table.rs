//! [`CallTable`]: the calls waiting on one channel, by request id.
//!
//! A channel takes its ids from a counter, so the ids in flight are (almost
//! always) a dense run of recent numbers. The table exploits that: it is a
//! power-of-two array indexed by `id & mask`, which makes insert and remove a
//! bounds-checked array access instead of a `BTreeMap` walk (two per call, on
//! the hottest path of the client). A slow call can still be in flight when the
//! counter comes round to its slot again; the newer id then goes to a small
//! ordered overflow map. The array doubles when it is half full, so collisions
//! stay rare; it never shrinks, and is at most four times the most calls ever in
//! flight at once (which `ChannelConfig::max_in_flight` bounds).
//!
//! Everything here is deterministic: no hashing, and iteration is in slot order
//! then id order.

use std::collections::BTreeMap;

/// Slots in a new table. Small: a channel with few calls stays small.
const SLOTS_INITIAL: usize = 64;

/// Calls by request id.
#[derive(Debug)]
pub(crate) struct CallTable<T> {
    /// `slots[id & (len - 1)]` holds `(id, value)` when that id was free to go there.
    slots: Vec<Option<(u64, T)>>,
    /// Ids whose slot was taken by an older call still in flight.
    overflow: BTreeMap<u64, T>,
    /// Entries in `slots` and `overflow`.
    len: usize,
}

impl<T> Default for CallTable<T> {
    fn default() -> CallTable<T> {
        CallTable {
            slots: std::iter::repeat_with(|| None)
                .take(SLOTS_INITIAL)
                .collect(),
            overflow: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> CallTable<T> {
    /// Calls in the table.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot_of(&self, id: u64) -> usize {
        debug_assert!(self.slots.len().is_power_of_two());
        // Truncation is the point: the low bits pick the slot.
        (id as usize) & (self.slots.len() - 1)
    }

    /// Adds `id`. The caller guarantees `id` is not in the table (ids are unique
    /// among calls in flight).
    pub(crate) fn insert(&mut self, id: u64, value: T) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(id, value);
        self.len += 1;
    }

    fn place(&mut self, id: u64, value: T) {
        let index = self.slot_of(id);
        match &mut self.slots[index] {
            slot @ None => *slot = Some((id, value)),
            Some((taken, _)) => {
                debug_assert_ne!(*taken, id, "request id {id} inserted twice");
                let previous = self.overflow.insert(id, value);
                debug_assert!(previous.is_none(), "request id {id} inserted twice");
            }
        }
    }

    /// Doubles the slots and re-places every entry (overflow entries too: most
    /// find a free slot in the larger array).
    fn grow(&mut self) {
        let slots_len = self.slots.len() * 2;
        let old = std::mem::replace(
            &mut self.slots,
            std::iter::repeat_with(|| None).take(slots_len).collect(),
        );
        let overflow = std::mem::take(&mut self.overflow);
        for (id, value) in old.into_iter().flatten().chain(overflow) {
            self.place(id, value);
        }
    }

    /// Removes and returns `id`'s value, if it is in the table.
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        let index = self.slot_of(id);
        let value = match &self.slots[index] {
            Some((taken, _)) if *taken == id => self.slots[index].take().map(|(_, value)| value),
            _ if self.overflow.is_empty() => None,
            _ => self.overflow.remove(&id),
        };
        if value.is_some() {
            self.len -= 1;
        }
        value
    }

    /// Removes the entries for which `expired` returns true and returns them,
    /// in slot order then id order.
    pub(crate) fn extract_if(&mut self, mut expired: impl FnMut(&T) -> bool) -> Vec<(u64, T)> {
        self.extract_by_id_if(|_, value| expired(value))
    }

    /// Like [`CallTable::extract_if`], deciding on the id too.
    pub(crate) fn extract_by_id_if(
        &mut self,
        mut expired: impl FnMut(u64, &T) -> bool,
    ) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|(id, value)| expired(*id, value)) {
                out.extend(slot.take());
            }
        }
        let overflowed: Vec<u64> = self
            .overflow
            .iter()
            .filter(|(&id, value)| expired(id, value))
            .map(|(&id, _)| id)
            .collect();
        for id in overflowed {
            out.extend(self.overflow.remove(&id).map(|value| (id, value)));
        }
        self.len -= out.len();
        out
    }

    /// Every value, in slot order then id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .flatten()
            .map(|(_, value)| value)
            .chain(self.overflow.values())
    }

    /// Empties the table, returning every entry.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, T)> {
        let mut out: Vec<(u64, T)> = self.slots.iter_mut().filter_map(Option::take).collect();
        out.extend(std::mem::take(&mut self.overflow));
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_insert_and_remove_in_any_order() {
        let mut table = CallTable::default();
        for id in 1..=1000u64 {
            table.insert(id, id * 10);
        }
        assert_eq!(table.len(), 1000);
        for id in (1..=1000u64).rev().step_by(2) {
            assert_eq!(table.remove(id), Some(id * 10));
        }
        assert_eq!(table.remove(1000), None, "removed twice");
        assert_eq!(table.len(), 500);
        for id in (1..=999u64).step_by(2) {
            assert_eq!(table.remove(id), Some(id * 10));
        }
        assert!(table.is_empty());
    }

    #[test]
    fn a_slow_call_sharing_a_slot_goes_to_overflow_and_both_are_found() {
        let mut table = CallTable::default();
        table.insert(1, "slow");
        // Ids 2..=64 come and go; 65 lands on the slow call's slot.
        for id in 2..=64u64 {
            table.insert(id, "fast");
            assert_eq!(table.remove(id), Some("fast"));
        }
        table.insert(65, "collides");
        assert_eq!(table.len(), 2);
        assert_eq!(table.remove(65), Some("collides"));
        assert_eq!(table.remove(1), Some("slow"));
        assert!(table.is_empty());
    }

    #[test]
    fn unknown_ids_are_not_found() {
        let mut table = CallTable::default();
        table.insert(7, ());
        assert_eq!(table.remove(7 + 64), None, "same slot, other id");
        assert_eq!(table.remove(8), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn extract_if_takes_matching_entries_from_slots_and_overflow() {
        let mut table = CallTable::default();
        table.insert(1, 1u32);
        table.insert(65, 65); // overflow: slot 1 is taken
        table.insert(2, 2);
        let taken = table.extract_if(|value| value % 2 == 1);
        assert_eq!(taken, vec![(1, 1), (65, 65)]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.values().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(table.take_all(), vec![(2, 2)]);
        assert!(table.is_empty());
    }

    #[test]
    fn growth_keeps_every_entry_reachable() {
        let mut table = CallTable::default();
        // Wide-apart ids collide in a small table, then spread out as it grows.
        let ids: Vec<u64> = (0..300u64).map(|i| i * 64 + 3).collect();
        for &id in &ids {
            table.insert(id, id);
        }
        assert_eq!(table.len(), ids.len());
        assert!(table.slots.len() >= 2 * ids.len());
        for &id in &ids {
            assert_eq!(table.remove(id), Some(id));
        }
        assert!(table.is_empty());
    }
}
