//! The recursive dependency closure of one PR (SPEC §3): every PR it depends on,
//! directly or transitively, and the dependency cycle it is on, if any. A cycle is
//! not an error: every member of a cycle gets the whole cycle in its closure, and
//! the status API reports the cycle.
//!
//! Pure and iterative (explicit stacks), so it terminates on any graph and a
//! 10,000-PR chain cannot overflow the stack.

use std::collections::{BTreeMap, BTreeSet};

use super::parse::PrRef;

/// The closure of one PR.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Closure {
    /// Every PR reachable from `start` (directly or transitively), sorted, WITHOUT
    /// `start` itself — even when `start` is on a cycle.
    pub members: Vec<PrRef>,
    /// If `start` is on a dependency cycle: every PR of the strongly connected
    /// component containing `start` (sorted, including `start`); empty otherwise.
    pub cycle: Vec<PrRef>,
}

/// Direct dependencies of each known PR (edges); PRs absent from the map have no
/// known edges.
pub fn closure(edges: &BTreeMap<PrRef, Vec<PrRef>>, start: &PrRef) -> Closure {
    let successors = |pr: &PrRef| edges.get(pr).map_or(&[][..], Vec::as_slice);

    // Forward: everything reachable through at least one edge (so `start` is in
    // `reached` only if it is on a cycle).
    let mut reached: BTreeSet<&PrRef> = BTreeSet::new();
    let mut stack: Vec<&PrRef> = successors(start).iter().collect();
    while let Some(pr) = stack.pop() {
        if reached.insert(pr) {
            stack.extend(successors(pr));
        }
    }
    let on_cycle = reached.contains(start);

    let cycle = if on_cycle {
        // Backward from `start`, within what it reaches: the PRs that both reach
        // and are reached by `start`, i.e. its strongly connected component.
        let mut predecessors: BTreeMap<&PrRef, Vec<&PrRef>> = BTreeMap::new();
        for &from in &reached {
            for to in successors(from) {
                predecessors.entry(to).or_default().push(from);
            }
        }
        let mut component: BTreeSet<&PrRef> = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(pr) = stack.pop() {
            if component.insert(pr) {
                stack.extend(predecessors.get(pr).into_iter().flatten().copied());
            }
        }
        component.into_iter().cloned().collect()
    } else {
        Vec::new()
    };

    Closure {
        members: reached
            .into_iter()
            .filter(|&pr| pr != start)
            .cloned()
            .collect(),
        cycle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(name: &str) -> PrRef {
        PrRef {
            host: "github.com".to_owned(),
            path: format!("acme/{name}"),
            number: 1,
        }
    }

    fn graph(pairs: &[(&str, &str)]) -> BTreeMap<PrRef, Vec<PrRef>> {
        let mut edges: BTreeMap<PrRef, Vec<PrRef>> = BTreeMap::new();
        for (from, to) in pairs {
            edges.entry(github(from)).or_default().push(github(to));
        }
        edges
    }

    fn prs(names: &[&str]) -> Vec<PrRef> {
        let mut v: Vec<PrRef> = names.iter().map(|n| github(n)).collect();
        v.sort();
        v
    }

    fn check(edges: &BTreeMap<PrRef, Vec<PrRef>>, start: &str, members: &[&str], cycle: &[&str]) {
        assert_eq!(
            closure(edges, &github(start)),
            Closure {
                members: prs(members),
                cycle: prs(cycle),
            },
            "closure of {start}"
        );
    }

    #[test]
    fn chain() {
        let g = graph(&[("a", "b"), ("b", "c")]);
        check(&g, "a", &["b", "c"], &[]);
        check(&g, "b", &["c"], &[]);
        check(&g, "c", &[], &[]);
    }

    #[test]
    fn diamond() {
        let g = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
        check(&g, "a", &["b", "c", "d"], &[]);
        check(&g, "b", &["d"], &[]);
        check(&g, "d", &[], &[]);
    }

    #[test]
    fn two_cycle() {
        let g = graph(&[("a", "b"), ("b", "a")]);
        check(&g, "a", &["b"], &["a", "b"]);
        check(&g, "b", &["a"], &["a", "b"]);
    }

    #[test]
    fn three_cycle() {
        let g = graph(&[("a", "b"), ("b", "c"), ("c", "a")]);
        for (start, others) in [("a", ["b", "c"]), ("b", ["a", "c"]), ("c", ["a", "b"])] {
            check(&g, start, &others, &["a", "b", "c"]);
        }
    }

    #[test]
    fn cycle_with_a_tail() {
        let g = graph(&[("a", "b"), ("b", "c"), ("c", "b")]);
        check(&g, "a", &["b", "c"], &[]);
        check(&g, "b", &["c"], &["b", "c"]);
        check(&g, "c", &["b"], &["b", "c"]);
    }

    #[test]
    fn cycle_with_exits_and_entries() {
        // x → a ⇄ b → y; the component of a is {a, b} only.
        let g = graph(&[("x", "a"), ("a", "b"), ("b", "a"), ("b", "y"), ("y", "z")]);
        check(&g, "a", &["b", "y", "z"], &["a", "b"]);
        check(&g, "x", &["a", "b", "y", "z"], &[]);
    }

    #[test]
    fn self_loop() {
        let g = graph(&[("a", "a")]);
        check(&g, "a", &[], &["a"]);
        let g = graph(&[("a", "a"), ("a", "b")]);
        check(&g, "a", &["b"], &["a"]);
    }

    #[test]
    fn start_without_edges() {
        check(&BTreeMap::new(), "a", &[], &[]);
    }

    #[test]
    fn duplicate_edges() {
        let g = graph(&[("a", "b"), ("a", "b"), ("b", "a"), ("b", "a")]);
        check(&g, "a", &["b"], &["a", "b"]);
    }

    #[test]
    fn cross_forge_edges_and_unknown_nodes() {
        let gl = PrRef {
            host: "gitlab.example.org".to_owned(),
            path: "sensors/drivers/lidar-x".to_owned(),
            number: 13,
        };
        let unknown = PrRef {
            host: "gitlab.example.org".to_owned(),
            path: "sensors/other".to_owned(),
            number: 2,
        };
        let mut g = graph(&[("a", "b")]);
        g.entry(github("b")).or_default().push(gl.clone());
        g.insert(gl.clone(), vec![unknown.clone(), github("a")]);
        let got = closure(&g, &github("a"));
        let mut members = vec![github("b"), gl.clone(), unknown.clone()];
        members.sort();
        let mut cycle = vec![github("a"), github("b"), gl.clone()];
        cycle.sort();
        assert_eq!(got, Closure { members, cycle });
        // `unknown` has no entry in the map: a member with no further edges.
        assert_eq!(closure(&g, &unknown), Closure::default());
    }

    #[test]
    fn long_chain_and_long_cycle() {
        let n = 10_000u64;
        let node = |i: u64| PrRef {
            host: "github.com".to_owned(),
            path: "acme/chain".to_owned(),
            number: i + 1,
        };
        let mut g: BTreeMap<PrRef, Vec<PrRef>> =
            (0..n - 1).map(|i| (node(i), vec![node(i + 1)])).collect();
        let got = closure(&g, &node(0));
        assert_eq!(got.members, (1..n).map(node).collect::<Vec<_>>());
        assert!(got.cycle.is_empty());

        g.insert(node(n - 1), vec![node(0)]);
        let got = closure(&g, &node(n / 2));
        assert_eq!(got.members.len(), (n - 1) as usize);
        assert_eq!(got.cycle, (0..n).map(node).collect::<Vec<_>>());
    }
}
