//! Who wrote a version: the lineage every version untorn writes carries in its user metadata,
//! and the verdict it gives after a lost answer (did my write land?).
//!
//! A lineage is the list of the ids of the versions an object went through, oldest first,
//! ending with the version's own id: `x-amz-meta-untorn-lineage: 0,1f3a...,9c2e...`. An id is
//! 24 random hex digits; `0` first means the list is complete back to the object's creation;
//! `e<etag>` stands for a version written by another program (no metadata), named by its ETag.
//! An update copies the lineage of the version it replaces and adds its own id (the last
//! [`LINEAGE_LEN`] kept); a plain write, which replaces whatever is there unread, starts a new
//! one.
//!
//! Why it answers the question: a conditional PUT `If-Match: E` can only land directly on a
//! version with ETag `E`, and every version an untorn update writes copies its parent's list.
//! So if the current version's lineage holds my id, my write landed (perhaps since replaced by
//! writers that built on it); if it holds the random id of the version I read and not mine,
//! every version since the one I read was written by untorn, each copying the list, and none
//! was mine: my write cannot have landed, and never will (its condition no longer holds).

use std::fmt::Write as _;

/// How many ids a lineage keeps (the newest). More writes than this between a lost answer and
/// the read that follows it make the outcome unknown.
pub const LINEAGE_LEN: usize = 24;

/// The metadata key of the lineage (S3: `x-amz-meta-untorn-lineage`).
pub(crate) const LINEAGE_KEY: &str = "untorn-lineage";
/// The metadata key of the checksum (S3: `x-amz-meta-untorn-sum`): `crc32=XXXXXXXX size=N`.
pub(crate) const SUM_KEY: &str = "untorn-sum";
/// The first entry of a lineage that is complete back to the object's creation.
const ROOT: &str = "0";

/// A fresh random id: 96 bits as 24 hex digits.
pub(crate) fn new_id() -> String {
    let mut s = String::with_capacity(24);
    for _ in 0..3 {
        let _ = write!(s, "{:08x}", fastrand::u32(..));
    }
    s
}

/// The ids of a version's lineage, oldest first (empty: a version without untorn's metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lineage(pub(crate) Vec<String>);

impl Lineage {
    /// Parses the metadata value (an unreadable one counts as none).
    pub(crate) fn parse(value: Option<&str>) -> Lineage {
        let Some(v) = value else {
            return Lineage::default();
        };
        let ids: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let ok = ids
            .iter()
            .all(|id| id.len() <= 80 && id.bytes().all(|b| b.is_ascii_graphic() && b != b','));
        if ok {
            Lineage(ids)
        } else {
            Lineage::default()
        }
    }

    /// The metadata value.
    pub(crate) fn render(&self) -> String {
        self.0.join(",")
    }

    /// The id of the version this lineage belongs to: its last entry, or, for a version
    /// without untorn's metadata, `e` and its ETag.
    pub(crate) fn own_id(&self, e_tag: Option<&str>) -> Option<String> {
        match self.0.last() {
            Some(id) => Some(id.clone()),
            None => e_tag.map(foreign_id),
        }
    }

    /// The lineage of a version written as an update of the version with this lineage and
    /// ETag (`None`: there was no object), with the new version's id `id`.
    pub(crate) fn child(parent: Option<(&Lineage, Option<&str>)>, id: &str) -> Lineage {
        let mut ids = match parent {
            None => vec![ROOT.to_string()],
            Some((l, _)) if !l.0.is_empty() => l.0.clone(),
            Some((_, e_tag)) => e_tag.map(foreign_id).into_iter().collect(),
        };
        ids.push(id.to_string());
        if ids.len() > LINEAGE_LEN {
            ids.drain(..ids.len() - LINEAGE_LEN);
        }
        Lineage(ids)
    }

    /// The lineage of a plain write (it replaces whatever is there, unread).
    pub(crate) fn fresh(id: &str) -> Lineage {
        Lineage(vec![id.to_string()])
    }

    fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|x| x == id)
    }
}

/// The id that stands for a version another program wrote: `e` and its ETag, without quotes.
fn foreign_id(e_tag: &str) -> String {
    let t: String = e_tag
        .trim_start_matches("W/")
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != ',')
        .collect();
    format!("e{t}")
}

/// What the object's current version says about a write that may have landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Landed {
    /// The write landed (the current version is it, or descends from it).
    Yes,
    /// The write did not land and cannot land any more: the version it was conditioned on was
    /// replaced by another writer's.
    No,
    /// Cannot tell.
    Unknown,
}

/// Did the write with id `mine`, conditioned on the version whose own id was `base` (`None`:
/// it created the object, or was a plain write), land, given the current version's
/// `current` lineage (`None`: there is no object now)?
///
/// Only a *random* id of the base proves anything: an `e<etag>` id names content, and another
/// program may have written the same content again (ABA).
pub(crate) fn landed(mine: &str, base: Option<&str>, current: Option<&Lineage>) -> Landed {
    let Some(current) = current else {
        // No object now. A create that landed would be there unless something deleted it
        // since; an update's object was deleted: nothing can be proven.
        return if base.is_none() {
            Landed::No
        } else {
            Landed::Unknown
        };
    };
    if current.contains(mine) {
        return Landed::Yes;
    }
    let proof = base.unwrap_or(ROOT);
    let random = proof == ROOT || !proof.starts_with('e');
    if random && current.contains(proof) {
        Landed::No
    } else {
        Landed::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(ids: &[&str]) -> Lineage {
        Lineage(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn ids_are_random_and_24_hex_digits() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn parse_and_render_round_trip() {
        let x = l(&["0", "aa", "bb"]);
        assert_eq!(Lineage::parse(Some(&x.render())), x);
        assert_eq!(Lineage::parse(None), Lineage::default());
        assert_eq!(Lineage::parse(Some("a b,c")), Lineage::default(), "garbage");
    }

    #[test]
    fn a_child_extends_its_parent_and_keeps_the_newest() {
        assert_eq!(Lineage::child(None, "a"), l(&["0", "a"]));
        assert_eq!(
            Lineage::child(Some((&l(&["0", "a"]), Some("\"x\""))), "b"),
            l(&["0", "a", "b"])
        );
        // A parent another program wrote: named by its ETag.
        assert_eq!(
            Lineage::child(Some((&Lineage::default(), Some("\"abc\""))), "b"),
            l(&["eabc", "b"])
        );
        let mut p = Lineage::child(None, "x0");
        for i in 1..100 {
            p = Lineage::child(Some((&p, None)), &format!("x{i}"));
        }
        assert_eq!(p.0.len(), LINEAGE_LEN);
        assert_eq!(p.0.last().unwrap(), "x99");
        assert_eq!(p.0[0], format!("x{}", 100 - LINEAGE_LEN));
    }

    #[test]
    fn verdicts() {
        use Landed::*;
        // Mine is there: landed, even if others built on it since.
        assert_eq!(landed("m", Some("b"), Some(&l(&["0", "b", "m"]))), Yes);
        assert_eq!(landed("m", Some("b"), Some(&l(&["b", "m", "c", "d"]))), Yes);
        // The base is there, followed by another writer's: cannot have landed.
        assert_eq!(landed("m", Some("b"), Some(&l(&["0", "b", "c"]))), No);
        // The base's id is gone (truncated, or another program wrote since): unknown.
        assert_eq!(landed("m", Some("b"), Some(&l(&["c", "d"]))), Unknown);
        assert_eq!(landed("m", Some("b"), Some(&Lineage::default())), Unknown);
        // A base another program wrote is named by content: no proof (ABA).
        assert_eq!(landed("m", Some("eabc"), Some(&l(&["eabc", "c"]))), Unknown);
        // A create: the object's lineage starts at its creation, without mine.
        assert_eq!(landed("m", None, Some(&l(&["0", "c"]))), No);
        assert_eq!(landed("m", None, Some(&l(&["c"]))), Unknown);
        assert_eq!(landed("m", None, None), No);
        // An update whose object is gone.
        assert_eq!(landed("m", Some("b"), None), Unknown);
    }

    /// The broken rule (re-run whenever the object changed, as a naive retry does) says `No`
    /// where the write did land: the check above is what prevents the double apply.
    #[test]
    fn the_naive_rule_would_apply_twice() {
        let naive = |_mine: &str, base: &str, current: &Lineage| {
            if current.0.last().map(String::as_str) == Some(base) {
                Landed::Unknown
            } else {
                Landed::No
            }
        };
        let after_mine_and_another = l(&["0", "b", "m", "c"]);
        assert_eq!(naive("m", "b", &after_mine_and_another), Landed::No);
        assert_eq!(
            landed("m", Some("b"), Some(&after_mine_and_another)),
            Landed::Yes
        );
    }
}
