//! Is WAL missing? Per timeline, from its first segment in the archive to its last, every
//! segment present; and along the history files, each timeline reaching the segment where
//! its child branched off, each child starting there. A segment of a timeline after the
//! point where its child branched off is on no recovery path (WAL of an abandoned
//! branch): counted, not a gap.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use wal_core::names::{SegmentSize, WalName, encode_segment_name};

/// A timeline as found in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Its id.
    pub id: u32,
    /// Its first and last segment (a `.partial` counts for its segment).
    pub first: String,
    /// See `first`.
    pub last: String,
    /// Segments present.
    pub segments: u64,
    /// Missing segments, as inclusive ranges of names.
    pub gaps: Vec<(String, String, u64)>,
    /// Segments after the point where a child timeline branched off.
    pub beyond_switch: u64,
}

impl Timeline {
    /// As the JSON summary shows it.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "timeline": self.id,
            "first": self.first,
            "last": self.last,
            "segments": self.segments,
            "gaps": self.gaps.iter().map(|(from, to, missing)| json!({
                "from": from, "to": to, "missing": missing
            })).collect::<Vec<_>>(),
            "beyond_switch": self.beyond_switch,
        })
    }
}

/// Segments in one log (`segments_per_log` is the highest segment number: 255 for 16
/// MiB, so 256 of them): the segment number of an LSN is then `lsn / segment size`.
fn per_log(size: SegmentSize) -> u64 {
    u64::from(size.segments_per_log()) + 1
}

/// The segment's number counted from the start of WAL (`log × segments per log +
/// segment`), which is also its first LSN divided by the segment size.
#[must_use]
pub fn number(name: &WalName, size: SegmentSize) -> Option<u64> {
    Some(u64::from(name.log()?) * per_log(size) + u64::from(name.segment()?))
}

fn name_of(timeline: u32, number: u64, size: SegmentSize) -> String {
    let per_log = per_log(size);
    encode_segment_name(
        timeline,
        u32::try_from(number / per_log).unwrap_or(u32::MAX),
        u32::try_from(number % per_log).unwrap_or(u32::MAX),
    )
}

/// What the archive holds, and the analysis of it.
#[derive(Debug, Default)]
pub struct Archive {
    /// Segment numbers present per timeline.
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    /// Per timeline with a history file: its direct parent and the LSN it branched at.
    pub parents: BTreeMap<u32, (u32, u64)>,
}

impl Archive {
    /// The timelines, each with its gaps, within `[from, to]` (segment numbers, any
    /// timeline); problems that are not gaps (a timeline without its history file).
    #[must_use]
    pub fn analyse(
        &self,
        size: SegmentSize,
        from: Option<u64>,
        to: Option<u64>,
    ) -> (Vec<Timeline>, Vec<String>) {
        let within = |n: u64| from.is_none_or(|f| n >= f) && to.is_none_or(|t| n <= t);
        let mut problems = Vec::new();
        // Where each timeline's child branched off: the segment holding the switch LSN.
        let mut branched: BTreeMap<u32, u64> = BTreeMap::new();
        for &(parent, lsn) in self.parents.values() {
            let at = lsn / size.bytes();
            branched
                .entry(parent)
                .and_modify(|n| *n = (*n).min(at))
                .or_insert(at);
        }
        let mut timelines = Vec::new();
        let newest = self.segments.keys().max();
        for (&id, present) in &self.segments {
            let present: BTreeSet<u64> = present.iter().copied().filter(|&n| within(n)).collect();
            let (Some(&first), Some(&last)) = (present.first(), present.last()) else {
                continue;
            };
            if id > 1 && !self.parents.contains_key(&id) {
                problems.push(format!(
                    "timeline {id} has no history file ({id:08X}.history): recovery cannot follow it"
                ));
            }
            // The expected span: from where it started (its switch segment, when known;
            // not before --from, and the first timeline at --from: WAL asked for is WAL
            // needed) to where its child branched off (when it did), else what is present.
            let branched_off = self.parents.get(&id).map(|&(_, lsn)| lsn / size.bytes());
            let start = match (branched_off, from) {
                (Some(at), Some(f)) => at.max(f),
                (Some(at), None) => at,
                (None, Some(f)) => f,
                (None, None) => first,
            }
            .min(first);
            // It must reach the segment before its child's first (the switch segment is
            // copied into the child's; its own copy, often a `.partial`, may be there too),
            // or, with no child, its last segment present; the newest timeline (the one
            // recovery follows to the end) must reach --to.
            let branch = branched.get(&id).copied();
            let end = if Some(&id) == newest {
                to.unwrap_or(last).max(last)
            } else {
                last
            };
            let (limit, reach) = match branch {
                Some(at) => (at, at.checked_sub(1)),
                None => (last, Some(end)),
            };
            let reach = reach.map(|r| to.map_or(r, |t| r.min(t)));
            let beyond = branch.map_or(0, |at| present.iter().filter(|&&n| n > at).count() as u64);
            let mut gaps = Vec::new();
            let mut expected = start;
            for &n in present.iter().filter(|&&n| n <= limit) {
                if n > expected {
                    gaps.push((
                        name_of(id, expected, size),
                        name_of(id, n - 1, size),
                        n - expected,
                    ));
                }
                expected = expected.max(n + 1);
            }
            if let Some(reach) = reach
                && expected <= reach
            {
                gaps.push((
                    name_of(id, expected, size),
                    name_of(id, reach, size),
                    reach - expected + 1,
                ));
            }
            timelines.push(Timeline {
                id,
                first: name_of(id, first, size),
                last: name_of(id, last, size),
                segments: present.len() as u64,
                gaps,
                beyond_switch: beyond,
            });
        }
        (timelines, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: SegmentSize = SegmentSize::DEFAULT;

    fn archive(segments: &[(u32, &[u64])], parents: &[(u32, u32, u64)]) -> Archive {
        Archive {
            segments: segments
                .iter()
                .map(|(t, ns)| (*t, ns.iter().copied().collect()))
                .collect(),
            parents: parents.iter().map(|&(c, p, lsn)| (c, (p, lsn))).collect(),
        }
    }

    /// WAL asked for is WAL needed: --from before the first segment and --to after the
    /// last are gaps; on an older timeline --to asks nothing beyond its branch point.
    #[test]
    fn the_bounds_asked_for_must_be_present() {
        let (timelines, _) = archive(&[(1, &[3, 4, 5])], &[]).analyse(SIZE, Some(1), Some(7));
        assert_eq!(
            timelines[0].gaps,
            [
                (
                    "000000010000000000000001".into(),
                    "000000010000000000000002".into(),
                    2
                ),
                (
                    "000000010000000000000006".into(),
                    "000000010000000000000007".into(),
                    2
                ),
            ]
        );
        let switch = 5 * SIZE.bytes() + 0xA0;
        let two = archive(&[(1, &[3, 4, 5]), (2, &[5, 6])], &[(2, 1, switch)]);
        let (timelines, _) = two.analyse(SIZE, Some(3), Some(6));
        assert!(timelines.iter().all(|t| t.gaps.is_empty()), "{timelines:?}");
        let (timelines, _) = two.analyse(SIZE, Some(3), Some(8));
        assert!(timelines[0].gaps.is_empty());
        assert_eq!(timelines[1].gaps[0].2, 2, "{timelines:?}");
    }

    #[test]
    fn gaps_within_a_timeline() {
        let (timelines, problems) =
            archive(&[(1, &[1, 2, 3, 6, 7, 9])], &[]).analyse(SIZE, None, None);
        assert!(problems.is_empty());
        let t = &timelines[0];
        assert_eq!(
            (t.first.as_str(), t.last.as_str(), t.segments),
            ("000000010000000000000001", "000000010000000000000009", 6)
        );
        assert_eq!(
            t.gaps,
            [
                (
                    "000000010000000000000004".into(),
                    "000000010000000000000005".into(),
                    2
                ),
                (
                    "000000010000000000000008".into(),
                    "000000010000000000000008".into(),
                    1
                ),
            ]
        );
        // The range limits what is looked at.
        let (timelines, _) =
            archive(&[(1, &[1, 2, 3, 6, 7, 9])], &[]).analyse(SIZE, Some(6), Some(7));
        assert!(timelines[0].gaps.is_empty());
        // Numbers carry across logs: segment 0xFF of log 0 is followed by log 1's 0.
        let (timelines, _) = archive(&[(1, &[0xFE, 0xFF, 0x100])], &[]).analyse(SIZE, None, None);
        assert!(timelines[0].gaps.is_empty());
        assert_eq!(timelines[0].last, "000000010000000100000000");
    }

    /// Timeline 2 branched off timeline 1 in segment 5 (`0/5000A0`): timeline 1 must reach
    /// segment 4 (its own 5 is often a `.partial`), timeline 2 must start at 5; timeline 1's
    /// segments after 5 are an abandoned branch.
    #[test]
    fn gaps_along_the_history() {
        let switch = 5 * SIZE.bytes() + 0xA0;
        let whole = archive(
            &[(1, &[1, 2, 3, 4, 5, 6]), (2, &[5, 6, 7])],
            &[(2, 1, switch)],
        );
        let (timelines, problems) = whole.analyse(SIZE, None, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(timelines.iter().all(|t| t.gaps.is_empty()), "{timelines:?}");
        assert_eq!(timelines[0].beyond_switch, 1);
        // Timeline 1 stops short of the switch, timeline 2 starts late.
        let short = archive(&[(1, &[1, 2]), (2, &[7, 8])], &[(2, 1, switch)]);
        let (timelines, _) = short.analyse(SIZE, None, None);
        assert_eq!(
            timelines[0].gaps,
            [(
                "000000010000000000000003".into(),
                "000000010000000000000004".into(),
                2
            )]
        );
        assert_eq!(
            timelines[1].gaps,
            [(
                "000000020000000000000005".into(),
                "000000020000000000000006".into(),
                2
            )]
        );
        // A timeline without its history file.
        let (_, problems) = archive(&[(2, &[5])], &[]).analyse(SIZE, None, None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("00000002.history"), "{problems:?}");
    }
}
