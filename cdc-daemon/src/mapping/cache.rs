//! The lookup caches' memory bound: every cache of a mapper shares one byte budget, counted by
//! an estimate of what each entry keeps resident (its key, its value's heap, the hash table's
//! share), so the daemon's memory depends on a setting rather than on the shape of the data.
//!
//! Each cache keeps two generations. Entries go into the current one; once the entries
//! inserted since the last turn add up to half the budget, every cache turns at the next batch
//! end: the previous generation is dropped and the current one becomes the previous. A hit in
//! the previous generation moves the entry back into the current one, so entries in use stay
//! cached and the others age out within two turns, without bookkeeping per entry. Together the
//! generations hold about the budget (plus what one batch inserts before the turn). Turning only
//! between batches keeps everything a batch wrote cached until the store has it, since a miss
//! reads the store.

use std::collections::HashMap;

use crate::resident::Resident;

/// The budget the caches of one mapper share, and what was inserted since they last turned.
#[derive(Debug)]
pub struct Budget {
    bytes: usize,
    inserted: usize,
}

impl Budget {
    /// A budget of `bytes` for every cache together.
    pub fn new(bytes: usize) -> Self {
        Budget { bytes, inserted: 0 }
    }

    /// Whether the caches should turn: the current generations hold half the budget.
    pub fn is_spent(&self) -> bool {
        self.inserted >= self.bytes / 2
    }

    /// Starts counting a new generation.
    pub fn turned(&mut self) {
        self.inserted = 0;
    }

    fn spend<V: Resident>(&mut self, key: &str, value: &V) {
        self.inserted = self.inserted.saturating_add(entry_bytes(key, value));
    }
}

/// What one cache entry keeps resident: the hash table's slot and control byte, the key's text
/// and the value's heap.
fn entry_bytes<V: Resident>(key: &str, value: &V) -> usize {
    size_of::<(String, V)>() + 1 + key.len() + value.heap_bytes()
}

/// One cache of two generations (see the module documentation).
#[derive(Debug)]
pub struct Cache<V> {
    current: HashMap<String, V>,
    previous: HashMap<String, V>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl<V: Resident> Cache<V> {
    /// The entry `key`, moved into the current generation if it was in the previous one.
    pub fn get(&mut self, key: &str, budget: &mut Budget) -> Option<&V> {
        if !self.current.contains_key(key)
            && let Some((key, value)) = self.previous.remove_entry(key)
        {
            budget.spend(&key, &value);
            self.current.insert(key, value);
        }
        self.current.get(key)
    }

    /// Caches `value` as `key`; returns the value it replaces, if it was cached.
    pub fn insert(&mut self, key: &str, value: V, budget: &mut Budget) -> Option<V> {
        budget.spend(key, &value);
        let replaced = self.current.insert(key.to_string(), value);
        let older = self.previous.remove(key);
        replaced.or(older)
    }

    /// Forgets the entry `key`.
    pub fn remove(&mut self, key: &str) {
        self.current.remove(key);
        self.previous.remove(key);
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    /// Drops the previous generation; the current one becomes the previous.
    pub fn turn(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// Estimated bytes both generations keep resident (for the tests of the bound).
    #[cfg(test)]
    fn resident_bytes(&self) -> usize {
        self.current
            .iter()
            .chain(&self.previous)
            .map(|(key, value)| entry_bytes(key, value))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    fn name(number: usize) -> String {
        format!("clinic number {number}")
    }

    #[test]
    fn an_entry_in_use_survives_turns_and_one_unused_ages_out_in_two() {
        let mut budget = Budget::new(1 << 20);
        let mut cache = Cache::default();
        cache.insert("used", name(1), &mut budget);
        cache.insert("unused", name(2), &mut budget);
        cache.turn();
        assert_eq!(cache.get("used", &mut budget), Some(&name(1)));
        cache.turn();
        assert_eq!(cache.get("used", &mut budget), Some(&name(1)));
        assert_eq!(cache.get("unused", &mut budget), None);
    }

    #[test]
    fn an_insert_returns_what_it_replaces_in_either_generation() {
        let mut budget = Budget::new(1 << 20);
        let mut cache = Cache::default();
        assert_eq!(cache.insert("a", name(1), &mut budget), None);
        cache.turn();
        assert_eq!(cache.insert("a", name(2), &mut budget), Some(name(1)));
        assert_eq!(cache.insert("a", name(3), &mut budget), Some(name(2)));
        cache.turn();
        cache.turn();
        assert_eq!(cache.get("a", &mut budget), None);
    }

    #[test]
    fn the_budget_is_spent_after_half_of_it_was_inserted() {
        let mut budget = Budget::new(10_000);
        let mut cache = Cache::default();
        let mut inserted = 0;
        while !budget.is_spent() {
            cache.insert(&inserted.to_string(), name(inserted), &mut budget);
            inserted += 1;
        }
        assert!(
            cache.resident_bytes() >= 5_000,
            "{}",
            cache.resident_bytes()
        );
        assert!(cache.resident_bytes() < 5_200, "{}", cache.resident_bytes());
        budget.turned();
        assert!(!budget.is_spent());
    }

    #[test]
    fn caches_turned_at_batch_ends_hold_the_budget_plus_one_batch() {
        let budget_bytes = 256 * 1024;
        let mut budget = Budget::new(budget_bytes);
        let mut patients = Cache::default();
        let mut batch_bytes = 0;
        for batch in 0..200 {
            // A batch reads old entries back and inserts new ones.
            let before = patients.resident_bytes();
            for number in 0..50 {
                let id = format!("patient-{}", batch * 50 + number);
                let old = format!("patient-{}", (batch * 50 + number) / 3);
                patients.get(&old, &mut budget);
                let snapshot = doc! { "id": &id, "full_name": "Ada Lovelace", "sex": "female" };
                patients.insert(&id, snapshot, &mut budget);
            }
            batch_bytes = usize::max(
                batch_bytes,
                patients.resident_bytes().saturating_sub(before),
            );
            if budget.is_spent() {
                patients.turn();
                budget.turned();
            }
            let resident = patients.resident_bytes();
            assert!(
                resident <= budget_bytes + 2 * batch_bytes,
                "batch {batch}: {resident} bytes resident"
            );
        }
        assert!(patients.resident_bytes() > budget_bytes / 4);
    }
}
