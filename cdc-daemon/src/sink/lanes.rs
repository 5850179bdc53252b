//! Splitting one collection's statements into lanes that may be sent at once.
//!
//! A batch's writes to one collection must keep their order only where they can meet: two
//! writes to the same document, or a multi-document write (a fan-out, which may match any
//! document) and anything around it. So the statements are cut into segments at every
//! multi-document write, which forms a segment of its own; within a segment each single-document
//! write goes to the lane its `_id` hashes to, in order. A segment's lanes are sent concurrently
//! and all of them end before the next segment starts. Every write to a document therefore
//! stays in stream order, while different documents' writes proceed at once — on a sharded
//! cluster, often on different shards.
//!
//! By `_id` rather than by patient: a report moved to another patient keeps its `_id`, so its
//! move and its later writes share a lane, where hashing by patient would split them. Writes to
//! different documents may reach the store in any order within a segment; nothing in the read
//! model can tell, as no index but `_id` is unique and every write is guarded by its own
//! document's position.

use std::hash::{Hash, Hasher};

use super::batch::Write;

/// Writes sent one after the other, in stream order.
pub type Lane<'w> = Vec<&'w Write>;

/// Cuts `writes` (one collection's, in order) into segments to be sent one after the other,
/// each as up to `lanes` lanes sent at once. A multi-document write, or one whose `_id` is not
/// text, is a segment with one lane of its own. Empty lanes are left out; `lanes` of 0 counts
/// as 1.
pub fn segments(writes: &[Write], lanes: usize) -> Vec<Vec<Lane<'_>>> {
    let lanes = lanes.max(1);
    let mut segments = Vec::new();
    let mut current: Vec<Lane<'_>> = vec![Vec::new(); lanes];
    for write in writes {
        match document_id(write) {
            Some(id) => current[lane_of(id, lanes)].push(write),
            None => {
                close(&mut current, &mut segments);
                segments.push(vec![vec![write]]);
            }
        }
    }
    close(&mut current, &mut segments);
    segments
}

/// Ends the segment being filled: its lanes that hold a write go to `segments`.
fn close<'w>(current: &mut [Lane<'w>], segments: &mut Vec<Vec<Lane<'w>>>) {
    let lanes: Vec<Lane<'w>> = current
        .iter_mut()
        .map(std::mem::take)
        .filter(|lane| !lane.is_empty())
        .collect();
    if !lanes.is_empty() {
        segments.push(lanes);
    }
}

/// The `_id` of the one document `write` addresses, if it addresses one by a text `_id` (every
/// single-document write the mapping makes does).
fn document_id(write: &Write) -> Option<&str> {
    match write {
        Write::Update {
            filter,
            multi: false,
            ..
        }
        | Write::Delete {
            filter,
            multi: false,
            ..
        } => filter.get("_id").and_then(|id| id.as_str()),
        Write::Move { id, .. } => Some(id),
        Write::Update { multi: true, .. } | Write::Delete { multi: true, .. } => None,
    }
}

/// The lane of document `id` among `lanes`: a hash that is the same in every process (std's
/// `DefaultHasher::new` has fixed keys), so the benchmark's reference splits alike.
fn lane_of(id: &str, lanes: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;
    use crate::sink::Key;

    fn upsert(id: &str, value: i32) -> Write {
        Write::upsert("c", id, doc! { "value": value })
    }

    /// Each segment's lanes as the `value`s (or `-1` for any other write) they hold.
    fn shape(segments: &[Vec<Lane<'_>>]) -> Vec<Vec<Vec<i32>>> {
        let value = |write: &&Write| match write {
            Write::Update { update, .. } => update
                .get_document("$set")
                .ok()
                .and_then(|set| set.get_i32("value").ok())
                .unwrap_or(-1),
            _ => -1,
        };
        segments
            .iter()
            .map(|lanes| {
                lanes
                    .iter()
                    .map(|lane| lane.iter().map(value).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn one_lane_keeps_a_segment_whole() {
        let writes: Vec<Write> = (0..10).map(|i| upsert(&format!("d{i}"), i)).collect();
        assert_eq!(
            shape(&segments(&writes, 1)),
            [[(0..10).collect::<Vec<_>>()]]
        );
        assert_eq!(segments(&writes, 0).len(), 1);
        assert!(segments(&[], 4).is_empty());
    }

    #[test]
    fn writes_to_one_document_share_a_lane_in_order() {
        let writes: Vec<Write> = (0..200)
            .map(|i| upsert(&format!("d{}", i % 20), i))
            .collect();
        let cut = segments(&writes, 8);
        assert_eq!(cut.len(), 1);
        let lanes = &cut[0];
        assert!(
            lanes.len() > 1,
            "twenty documents use several of eight lanes"
        );
        // Write `value` is to document `value % 20`.
        let values = shape(&cut).remove(0);
        for document in 0..20 {
            let holding = values
                .iter()
                .filter(|lane| lane.iter().any(|value| value % 20 == document))
                .count();
            assert_eq!(holding, 1, "document d{document} is in one lane");
        }
        for lane in &values {
            assert!(lane.is_sorted(), "a lane keeps stream order: {lane:?}");
        }
        assert_eq!(values.iter().map(Vec::len).sum::<usize>(), 200);
    }

    #[test]
    fn a_multi_document_write_stands_alone_between_what_comes_before_and_after() {
        let fan_out = Write::update_many("c", doc! { "p": "x" }, doc! { "$set": { "n": 1 } });
        let wipe = Write::delete_many("c", doc! {});
        let writes = vec![
            upsert("a", 0),
            upsert("b", 1),
            fan_out.clone(),
            upsert("a", 2),
            wipe.clone(),
            upsert("b", 3),
        ];
        let cut = segments(&writes, 4);
        let flat: Vec<Vec<i32>> = shape(&cut)
            .into_iter()
            .map(|lanes| {
                let mut values: Vec<i32> = lanes.concat();
                values.sort_unstable();
                values
            })
            .collect();
        assert_eq!(flat, [vec![0, 1], vec![-1], vec![2], vec![-1], vec![3]]);
        assert_eq!(cut[1], [vec![&fan_out]]);
        assert_eq!(cut[3], [vec![&wipe]]);
    }

    #[test]
    fn a_move_shares_the_lane_of_its_reports_writes() {
        let move_to = Write::move_report("r1", "p1", "p2");
        let before = Write::upsert("reports", Key::report("r1", "p1"), doc! { "v": 1 });
        let after = Write::upsert("reports", Key::report("r1", "p2"), doc! { "v": 2 });
        let mut writes: Vec<Write> = (0..50)
            .map(|i| Write::upsert("reports", Key::report(&format!("r{i}x"), "p"), doc! {}))
            .collect();
        writes.extend([before.clone(), move_to.clone(), after.clone()]);
        let cut = segments(&writes, 8);
        assert_eq!(cut.len(), 1);
        let lane = cut[0]
            .iter()
            .find(|lane| lane.contains(&&move_to))
            .expect("the move is in a lane");
        let theirs: Vec<&Write> = lane
            .iter()
            .copied()
            .filter(|write| [&before, &move_to, &after].contains(write))
            .collect();
        assert_eq!(theirs, [&before, &move_to, &after]);
    }

    #[test]
    fn a_write_without_a_text_id_stands_alone() {
        let odd = Write::Update {
            collection: "c",
            filter: doc! { "_id": 7 },
            update: doc! { "$set": { "value": 9 } },
            upsert: true,
            multi: false,
            lsn: None,
        };
        let writes = vec![upsert("a", 0), odd, upsert("b", 1)];
        let flat: Vec<Vec<Vec<i32>>> = shape(&segments(&writes, 2));
        assert_eq!(flat.len(), 3);
        assert_eq!(flat[1], [vec![9]]);
    }
}
