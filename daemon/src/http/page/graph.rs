//! A pull request's dependency closure drawn as a small server-rendered SVG (SPEC
//! §14: the status page shows "PRs with their dependency graphs"): the PR on top,
//! each PR of its closure below it, coloured by the state of its own build's last
//! result, linked to its history. The snapshot gives each build its whole closure,
//! not its edges; a dependency that is itself built in the workspace brings its own
//! closure, so the drawing keeps only the direct edges (a → c is dropped when a → b
//! → c is known) and puts each PR one layer below the deepest PR that needs it. An
//! unknown dependency hangs under the PR directly. No script and no layout engine:
//! a few boxes and lines whose coordinates are computed here.

use maud::{Markup, html};

/// Width and height of a node's box, and the gaps between boxes, in SVG units.
const NODE_W: usize = 190;
const NODE_H: usize = 30;
const GAP_X: usize = 16;
const GAP_Y: usize = 34;
/// The longest label drawn whole; longer ones are cut (the full one is the title).
const LABEL_MAX: usize = 28;

/// One PR of the drawing.
pub struct Node {
    /// `HOST/PATH#N`.
    pub label: String,
    /// Its build's key in the workspace (the row and history it links to).
    pub key: String,
    /// The state of its build's last result (`success`, …), `none` without one, or
    /// `unbuilt` when the workspace has no history of it.
    pub state: String,
    /// Its own closure, where the workspace builds it (labels).
    pub closure: Option<Vec<String>>,
}

/// The graph of `root` and the PRs of its closure, `deps`.
pub fn graph(root: &Node, deps: &[Node]) -> Markup {
    let nodes: Vec<&Node> = std::iter::once(root).chain(deps).collect();
    let edges = direct_edges(&nodes);
    let depth = depths(nodes.len(), &edges);
    let layers = depth.iter().copied().max().unwrap_or(0) + 1;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, d) in depth.iter().enumerate() {
        rows[*d].push(i);
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1);
    let width = widest * (NODE_W + GAP_X) - GAP_X + 2;
    let height = layers * (NODE_H + GAP_Y) - GAP_Y + 2;
    // Each node's top-left corner: its layer's row, centred.
    let mut at = vec![(0usize, 0usize); nodes.len()];
    for (layer, members) in rows.iter().enumerate() {
        let row_width = members.len() * (NODE_W + GAP_X) - GAP_X;
        let left = (width - row_width) / 2;
        for (slot, &i) in members.iter().enumerate() {
            at[i] = (left + slot * (NODE_W + GAP_X), 1 + layer * (NODE_H + GAP_Y));
        }
    }
    let view_box = format!("0 0 {width} {height}");
    html! {
        svg.graph viewBox=(view_box) width=(width) height=(height) role="img" {
            title { "dependencies of " (root.label) }
            @for &(from, to) in &edges {
                line.edge
                    x1=(at[from].0 + NODE_W / 2) y1=(at[from].1 + NODE_H)
                    x2=(at[to].0 + NODE_W / 2) y2=(at[to].1) {}
            }
            @for (i, node) in nodes.iter().enumerate() {
                (box_of(node, at[i]))
            }
        }
    }
}

/// One node: a box coloured by its state, its label, linked to its build's history.
fn box_of(node: &Node, (x, y): (usize, usize)) -> Markup {
    let label = cut(&node.label);
    let class = format!("node st-{}", node.state);
    let href = format!("/builds/{}", super::encode_key(&node.key));
    let inner = html! {
        title { (node.label) ": " (node.state) }
        rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="4" {}
        text x=(x + NODE_W / 2) y=(y + NODE_H / 2 + 4) text-anchor="middle" { (label) }
    };
    html! {
        g class=(class) data-node=(node.key) {
            @if node.state == "unbuilt" { (inner) } @else { a href=(href) { (inner) } }
        }
    }
}

fn cut(label: &str) -> String {
    if label.chars().count() <= LABEL_MAX {
        return label.to_owned();
    }
    let tail: String = label.chars().rev().take(LABEL_MAX - 1).collect();
    format!("…{}", tail.chars().rev().collect::<String>())
}

/// The edges `(from, to)` between `nodes` (0 is the root, which needs all the
/// others): `a` needs `c` when `c` is in `a`'s closure, kept only when no `b` in
/// between is known (`a` needs `b`, `b` needs `c`).
fn direct_edges(nodes: &[&Node]) -> Vec<(usize, usize)> {
    let n = nodes.len();
    let needs = |a: usize, c: usize| -> bool {
        a != c
            && (a == 0
                || nodes[a]
                    .closure
                    .as_ref()
                    .is_some_and(|cl| cl.contains(&nodes[c].label)))
    };
    let mut edges = Vec::new();
    for a in 0..n {
        for c in 1..n {
            if needs(a, c) && !(1..n).any(|b| b != a && b != c && needs(a, b) && needs(b, c)) {
                edges.push((a, c));
            }
        }
    }
    // A cycle leaves some node without an incoming edge: it hangs under the root.
    for c in 1..n {
        if !edges.iter().any(|&(_, to)| to == c) {
            edges.push((0, c));
        }
    }
    edges
}

/// Each node's layer: one below the deepest node that needs it (at most `n - 1`,
/// whatever cycles the edges have).
fn depths(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut depth = vec![0; n];
    for _ in 0..n {
        let mut changed = false;
        for &(from, to) in edges {
            let below = (depth[from] + 1).min(n.saturating_sub(1));
            if to != 0 && depth[to] < below {
                depth[to] = below;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(label: &str, closure: Option<&[&str]>) -> Node {
        Node {
            label: label.to_owned(),
            key: format!("ws/pr/{}", label.replace('#', "/")),
            state: "none".to_owned(),
            closure: closure.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn only_direct_edges_are_drawn_and_each_pr_is_below_what_needs_it() {
        // app needs lib and base; lib needs base: app → lib → base.
        let root = node("h/app#1", None);
        let deps = [node("h/lib#2", Some(&["h/base#3"])), node("h/base#3", None)];
        let nodes: Vec<&Node> = std::iter::once(&root).chain(&deps).collect();
        let edges = direct_edges(&nodes);
        assert_eq!(edges, [(0, 1), (1, 2)]);
        assert_eq!(depths(3, &edges), [0, 1, 2]);
    }

    #[test]
    fn independent_dependencies_share_a_layer_and_a_cycle_terminates() {
        let root = node("h/app#1", None);
        let deps = [node("h/a#2", None), node("h/b#3", None)];
        let nodes: Vec<&Node> = std::iter::once(&root).chain(&deps).collect();
        assert_eq!(direct_edges(&nodes), [(0, 1), (0, 2)]);
        let cycle = [
            node("h/a#2", Some(&["h/b#3"])),
            node("h/b#3", Some(&["h/a#2"])),
        ];
        let nodes: Vec<&Node> = std::iter::once(&root).chain(&cycle).collect();
        let edges = direct_edges(&nodes);
        assert!(depths(3, &edges).iter().all(|d| *d <= 2), "{edges:?}");
    }

    #[test]
    fn labels_are_escaped_and_long_ones_cut_from_the_left() {
        let root = node("h/<app>#1", None);
        let svg = graph(&root, &[node(&format!("h/{}#2", "x".repeat(40)), None)]).into_string();
        assert!(svg.contains("h/&lt;app&gt;#1"), "{svg}");
        assert!(
            svg.contains(&format!(">…{}#2</text>", "x".repeat(25))),
            "{svg}"
        );
        assert!(!svg.contains("<app>"));
    }
}
