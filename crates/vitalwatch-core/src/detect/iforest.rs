//! The isolation forest (Liu, Ting & Zhou, "Isolation Forest", ICDM 2008), with
//! scikit-learn's `IsolationForest` semantics: subsample ψ rows without replacement per tree,
//! grow each tree to height ⌈log2 ψ⌉ by picking a random non-constant feature and a split
//! drawn uniformly between the node's min and max (`x <= split` goes left), add c(n) at each
//! leaf for the subtree that was not grown, and score `s = 2^(−E[h(x)] / c(ψ))`.
//!
//! Two representations of a tree exist: [`TreeFile`], the parallel arrays stored in the model
//! file (scikit-learn's `tree_` layout, easy to validate), and the compiled [`Forest`], one
//! flat array of 8-byte nodes whose sibling pairs are adjacent and whose thresholds are
//! ranks among the forest's distinct thresholds, so scoring walks memory without allocating
//! and compares integers. Every `TreeFile` — trained or read from a file — reaches scoring only
//! through [`Forest::compile`], which checks indices, cycles, features and thresholds.
//!
//! This module sees scaled feature vectors only; it must not know about readings or units.

use rand::seq::index;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Euler–Mascheroni constant, used in H(i) ≈ ln(i) + γ (Liu et al. 2008, §2).
/// The most trees a model may have (scikit-learn's default is 100). Training and the model
/// file's reader both enforce it.
pub const MAX_TREES: u32 = 10_000;
/// The largest subsample ψ; bounds a tree at 2ψ − 1 nodes.
pub const MAX_SAMPLE_SIZE: u32 = 65_536;

const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Marks a leaf in a file tree's child and feature arrays (scikit-learn uses −1 too).
const FILE_LEAF: i64 = -1;

/// c(n): the average path length of an unsuccessful search in a binary search tree of n
/// points, c(n) = 2H(n−1) − 2(n−1)/n, with c(1) = 0 and c(2) = 1 (scikit-learn's
/// `_average_path_length`).
pub(crate) fn average_path_length(n: u32) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = f64::from(n);
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// The height limit ⌈log2 ψ⌉ for a subsample of `sample_size` (at least 1).
pub(crate) fn height_limit(sample_size: u32) -> u32 {
    let sample_size = sample_size.max(2);
    // ⌈log2 n⌉ = bits needed for n − 1.
    u32::BITS - (sample_size - 1).leading_zeros()
}

/// One tree as stored in the model file: node `i` is a leaf when `left[i] == right[i] == −1`,
/// otherwise rows with `x[feature[i]] <= threshold[i]` go to `left[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TreeFile {
    pub(crate) left: Vec<i64>,
    pub(crate) right: Vec<i64>,
    /// −1 at leaves.
    pub(crate) feature: Vec<i64>,
    /// The split in scaled units; 0 at leaves.
    pub(crate) threshold: Vec<f64>,
    /// Training rows that reached the node; a leaf's count gives its c(n) correction.
    pub(crate) n_samples: Vec<u32>,
}

impl TreeFile {
    pub(crate) fn len(&self) -> usize {
        self.left.len()
    }
}

/// Grows one tree on `sample` (row indices into the row-major, scaled `rows`).
pub(crate) fn grow_tree<R: Rng + ?Sized>(
    rows: &[f64],
    n_features: usize,
    sample: &mut [u32],
    limit: u32,
    rng: &mut R,
) -> TreeFile {
    let mut tree = TreeFile {
        left: Vec::new(),
        right: Vec::new(),
        feature: Vec::new(),
        threshold: Vec::new(),
        n_samples: Vec::new(),
    };
    let push_leaf = |tree: &mut TreeFile, n: usize| {
        tree.left.push(FILE_LEAF);
        tree.right.push(FILE_LEAF);
        tree.feature.push(FILE_LEAF);
        tree.threshold.push(0.0);
        tree.n_samples.push(n as u32);
    };
    push_leaf(&mut tree, sample.len());
    // (node, start, end, depth) over `sample`, partitioned in place.
    let mut stack = vec![(0usize, 0usize, sample.len(), 0u32)];
    let mut candidates: Vec<usize> = Vec::with_capacity(n_features);
    while let Some((node, start, end, depth)) = stack.pop() {
        if depth >= limit || end - start <= 1 {
            continue;
        }
        let rows_here = &mut sample[start..end];
        let Some((feature, split)) =
            choose_split(rows, n_features, rows_here, &mut candidates, rng)
        else {
            // Every feature is constant here: scikit-learn makes this a leaf too.
            continue;
        };
        let n_left = partition(rows, n_features, rows_here, feature, split);
        let left = tree.len();
        push_leaf(&mut tree, n_left);
        push_leaf(&mut tree, rows_here.len() - n_left);
        tree.left[node] = left as i64;
        tree.right[node] = left as i64 + 1;
        tree.feature[node] = feature as i64;
        tree.threshold[node] = split;
        stack.push((left + 1, start + n_left, end, depth + 1));
        stack.push((left, start, start + n_left, depth + 1));
    }
    tree
}

/// Picks a feature uniformly among those not constant on `sample`, and a split uniform in
/// `[min, max)` of that feature. `None` when every feature is constant.
fn choose_split<R: Rng + ?Sized>(
    rows: &[f64],
    n_features: usize,
    sample: &[u32],
    candidates: &mut Vec<usize>,
    rng: &mut R,
) -> Option<(usize, f64)> {
    candidates.clear();
    candidates.extend(0..n_features);
    while !candidates.is_empty() {
        let pick = rng.random_range(0..candidates.len());
        let feature = candidates.swap_remove(pick);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &row in sample {
            let value = rows[row as usize * n_features + feature];
            min = min.min(value);
            max = max.max(value);
        }
        if max > min {
            let unit: f64 = rng.random();
            let mut split = min + (max - min) * unit;
            // Rounding can land on max, which would send every row left.
            if split >= max {
                split = min;
            }
            return Some((feature, split));
        }
    }
    None
}

/// Moves rows with `x[feature] <= split` to the front; returns how many there are.
fn partition(
    rows: &[f64],
    n_features: usize,
    sample: &mut [u32],
    feature: usize,
    split: f64,
) -> usize {
    let mut n_left = 0;
    for idx in 0..sample.len() {
        if rows[sample[idx] as usize * n_features + feature] <= split {
            sample.swap(idx, n_left);
            n_left += 1;
        }
    }
    n_left
}

/// Draws `amount` distinct row indices out of `n_rows` (scikit-learn's subsample without
/// replacement), sorted so the sample does not depend on the sampler's internal order.
pub(crate) fn subsample<R: Rng + ?Sized>(rng: &mut R, n_rows: usize, amount: usize) -> Vec<u32> {
    let mut picked: Vec<u32> = index::sample(rng, n_rows, amount.min(n_rows))
        .into_iter()
        .map(|idx| idx as u32)
        .collect();
    picked.sort_unstable();
    picked
}

/// A compiled node: 8 bytes. Rows go right (to `left + 1`) when `x[feature] > threshold`,
/// left otherwise. The threshold is not stored as a number but as its rank `key` among the
/// distinct thresholds of its feature in the whole forest ([`Forest::cuts`]); a reading's
/// value is ranked once per feature before the walk (`rank = ` how many of those thresholds
/// lie below it), and `x > threshold` is then exactly `rank > key`: one integer comparison per
/// node, no rounding, no tie case, and the scores are those of the `f64` comparison bit for bit
/// (NaN ranks 0 and so goes left everywhere, as `NaN > t` is false).
///
/// A leaf points `left` at itself with `key = u32::MAX`, above every rank, so every row stays
/// put: scoring can then walk every tree a fixed number of steps with no data-dependent branch
/// (a mispredicted branch per level cost 3 µs per reading; the fixed walk lets the CPU overlap
/// trees).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    key: u32,
    /// `left << FEATURE_BITS | feature`.
    packed: u32,
}

/// Split features fit in the low bits of [`Node::packed`].
const FEATURE_BITS: u32 = 3;
/// The most features a split may name (8; the model has at most `MAX_FEATURES`, also 8).
pub(crate) const MAX_SPLIT_FEATURES: usize = 1 << FEATURE_BITS;
const FEATURE_MASK: u32 = (1 << FEATURE_BITS) - 1;
/// The most nodes a compiled forest may have (node indices fit the rest of `packed`).
const MAX_FOREST_NODES: usize = 1 << (32 - FEATURE_BITS);

/// Trees one reading walks in lockstep in [`Forest::score`].
const LANES: usize = 8;
/// Readings [`Forest::score_rows`] walks through each tree together.
pub(crate) const ROWS: usize = 8;

/// A scaled vector as ranks among the forest's cuts, one per split feature.
pub(crate) type Ranks = [u32; MAX_SPLIT_FEATURES];

impl Node {
    fn split(key: u32, feature: u32, left: u32) -> Node {
        Node {
            key,
            packed: (left << FEATURE_BITS) | feature,
        }
    }

    fn leaf(at: u32) -> Node {
        Node {
            key: u32::MAX,
            packed: at << FEATURE_BITS,
        }
    }

    fn feature(self) -> usize {
        (self.packed & FEATURE_MASK) as usize
    }

    fn left(self) -> usize {
        (self.packed >> FEATURE_BITS) as usize
    }
}

/// A placeholder until the node is compiled.
const UNSET: Node = Node {
    key: u32::MAX,
    packed: 0,
};

/// How many of the sorted `cuts` lie strictly below `x` (0 for NaN).
fn rank(cuts: &[f64], x: f64) -> u32 {
    // At most MAX_FOREST_NODES cuts, so the count fits a u32.
    cuts.partition_point(|cut| *cut < x) as u32
}

/// Why a file tree cannot be compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TreeDefect {
    Empty,
    RaggedArrays,
    TooManyNodes,
    ChildOutOfBounds,
    /// A node is reached twice: a cycle or a shared subtree.
    NodeReachedTwice,
    UnreachableNode,
    HalfLeaf,
    FeatureOutOfRange,
    NonFiniteThreshold,
    TooDeep,
    BadLeafCount,
    /// More nodes in the whole forest than a compiled node can index (2^29).
    ForestTooLarge,
}

impl TreeDefect {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TreeDefect::Empty => "a tree has no nodes",
            TreeDefect::RaggedArrays => "a tree's arrays differ in length",
            TreeDefect::TooManyNodes => "a tree has more nodes than its sample size allows",
            TreeDefect::ChildOutOfBounds => "a child index is out of bounds",
            TreeDefect::NodeReachedTwice => "a node is reached twice (cycle or shared subtree)",
            TreeDefect::UnreachableNode => "a node is not reachable from the root",
            TreeDefect::HalfLeaf => "a node has exactly one child",
            TreeDefect::FeatureOutOfRange => "a split names a feature the model does not have",
            TreeDefect::NonFiniteThreshold => "a split threshold is not finite",
            TreeDefect::TooDeep => "a tree is deeper than the height limit",
            TreeDefect::BadLeafCount => "a leaf's sample count is 0 or above the sample size",
            TreeDefect::ForestTooLarge => "the forest has more than 2^29 nodes in all",
        }
    }
}

/// The compiled forest: every tree's nodes in one array.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    /// Per feature, the distinct split thresholds of the whole forest in increasing order: a
    /// split's `key` is its threshold's index here.
    cuts: Vec<Vec<f64>>,
    /// For a leaf, its whole path length `depth + c(n_samples)`; 0 for a split.
    path_length: Vec<f64>,
    /// The deepest leaf's depth: the number of steps a walk takes.
    depth: u32,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    /// c(ψ), the normaliser of the mean path length.
    c_sample: f64,
}

impl Forest {
    /// Validates and compiles file trees. `sample_size` is ψ; `n_features` bounds the split
    /// features. Walks breadth first, so sibling pairs land next to each other and the top
    /// levels of a tree share cache lines.
    pub(crate) fn compile(
        trees: &[TreeFile],
        n_features: usize,
        sample_size: u32,
    ) -> Result<Forest, (usize, TreeDefect)> {
        let limit = height_limit(sample_size);
        let max_nodes = 2 * sample_size.max(1) as usize - 1;
        let total: usize = trees.iter().map(TreeFile::len).sum();
        if total > MAX_FOREST_NODES {
            return Err((trees.len().saturating_sub(1), TreeDefect::ForestTooLarge));
        }
        let mut nodes = Vec::with_capacity(total);
        let mut exact = Vec::with_capacity(total);
        let mut path_length = Vec::with_capacity(total);
        let mut max_depth = 0;
        let mut roots = Vec::with_capacity(trees.len());
        let mut reached: Vec<bool> = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        for (tree_idx, tree) in trees.iter().enumerate() {
            let len = tree.len();
            if len == 0 {
                return Err((tree_idx, TreeDefect::Empty));
            }
            if [
                tree.right.len(),
                tree.feature.len(),
                tree.threshold.len(),
                tree.n_samples.len(),
            ]
            .iter()
            .any(|other| *other != len)
            {
                return Err((tree_idx, TreeDefect::RaggedArrays));
            }
            if len > max_nodes {
                return Err((tree_idx, TreeDefect::TooManyNodes));
            }
            reached.clear();
            reached.resize(len, false);
            reached[0] = true;
            let root = nodes.len();
            roots.push(root as u32);
            nodes.push(UNSET);
            exact.push(f64::INFINITY);
            path_length.push(0.0);
            queue.clear();
            // (index in the file tree, index in `nodes`, depth)
            queue.push_back((0usize, root, 0u32));
            while let Some((file_idx, out_idx, depth)) = queue.pop_front() {
                if depth > limit {
                    return Err((tree_idx, TreeDefect::TooDeep));
                }
                let (left, right) = (tree.left[file_idx], tree.right[file_idx]);
                if left == FILE_LEAF && right == FILE_LEAF {
                    let n = tree.n_samples[file_idx];
                    if n == 0 || n > sample_size {
                        return Err((tree_idx, TreeDefect::BadLeafCount));
                    }
                    nodes[out_idx] = Node::leaf(out_idx as u32);
                    path_length[out_idx] = f64::from(depth) + average_path_length(n);
                    max_depth = max_depth.max(depth);
                    continue;
                }
                if left == FILE_LEAF || right == FILE_LEAF {
                    return Err((tree_idx, TreeDefect::HalfLeaf));
                }
                let feature = tree.feature[file_idx];
                if feature < 0 || feature as usize >= n_features.min(MAX_SPLIT_FEATURES) {
                    return Err((tree_idx, TreeDefect::FeatureOutOfRange));
                }
                let threshold = tree.threshold[file_idx];
                if !threshold.is_finite() {
                    return Err((tree_idx, TreeDefect::NonFiniteThreshold));
                }
                let out_left = nodes.len();
                nodes[out_idx] = Node::split(u32::MAX, feature as u32, out_left as u32);
                exact[out_idx] = threshold;
                for (child, out_child) in [(left, out_left), (right, out_left + 1)] {
                    let child = usize::try_from(child)
                        .ok()
                        .filter(|child| *child < len)
                        .ok_or((tree_idx, TreeDefect::ChildOutOfBounds))?;
                    if std::mem::replace(&mut reached[child], true) {
                        return Err((tree_idx, TreeDefect::NodeReachedTwice));
                    }
                    nodes.push(UNSET);
                    exact.push(f64::INFINITY);
                    path_length.push(0.0);
                    queue.push_back((child, out_child, depth + 1));
                }
            }
            if reached.iter().any(|seen| !seen) {
                return Err((tree_idx, TreeDefect::UnreachableNode));
            }
        }
        let cuts = rank_thresholds(&mut nodes, &exact, n_features.min(MAX_SPLIT_FEATURES));
        Ok(Forest {
            nodes,
            cuts,
            path_length,
            depth: max_depth,
            roots,
            c_sample: average_path_length(sample_size),
        })
    }

    /// The anomaly score s = 2^(−E[h(x)]/c(ψ)) of a scaled vector, in (0, 1]; higher is more
    /// anomalous. `x.len()` must be the model's feature count. Allocates nothing.
    pub(crate) fn score(&self, x: &[f64]) -> f64 {
        let ranks = self.ranks(x);
        let step = |idx: usize| {
            let node = self.nodes[idx];
            node.left() + usize::from(ranks[node.feature()] > node.key)
        };
        let mut total = 0.0;
        let mut chunks = self.roots.chunks_exact(LANES);
        for chunk in &mut chunks {
            // `LANES` trees in lockstep: their loads are independent, so the CPU overlaps
            // them instead of waiting on one chain of dependent loads.
            let mut idx = [0usize; LANES];
            for (lane, root) in idx.iter_mut().zip(chunk) {
                *lane = *root as usize;
            }
            for _ in 0..self.depth {
                for lane in &mut idx {
                    *lane = step(*lane);
                }
            }
            total += idx.iter().map(|lane| self.path_length[*lane]).sum::<f64>();
        }
        for &root in chunks.remainder() {
            let mut idx = root as usize;
            for _ in 0..self.depth {
                idx = step(idx);
            }
            total += self.path_length[idx];
        }
        self.normalise(total)
    }

    /// Each feature's rank among the forest's cuts: what the walk compares with node keys.
    pub(crate) fn ranks(&self, x: &[f64]) -> Ranks {
        let mut ranks = [0u32; MAX_SPLIT_FEATURES];
        for ((rank_x, cuts), value) in ranks.iter_mut().zip(&self.cuts).zip(x) {
            *rank_x = rank(cuts, *value);
        }
        ranks
    }

    /// The scores of `ROWS` ranked vectors, bit for bit what [`Forest::score`] gives each.
    /// The rows walk one tree together, so its nodes are loaded into the cache once for all
    /// of them instead of once per row: a batch costs less per reading than single calls.
    pub(crate) fn score_rows(&self, rows: &[Ranks; ROWS]) -> [f64; ROWS] {
        let walk = |root: u32| {
            let mut idx = [root as usize; ROWS];
            for _ in 0..self.depth {
                for (lane, ranks) in idx.iter_mut().zip(rows) {
                    let node = self.nodes[*lane];
                    *lane = node.left() + usize::from(ranks[node.feature()] > node.key);
                }
            }
            idx.map(|lane| self.path_length[lane])
        };
        let mut totals = [0.0f64; ROWS];
        let mut chunks = self.roots.chunks_exact(LANES);
        for chunk in &mut chunks {
            // Summed per chunk of `LANES` trees and then into the total, as `score` does, so
            // the floating-point sums are the same.
            let mut sums = [0.0f64; ROWS];
            for &root in chunk {
                for (sum, length) in sums.iter_mut().zip(walk(root)) {
                    *sum += length;
                }
            }
            for (total, sum) in totals.iter_mut().zip(sums) {
                *total += sum;
            }
        }
        for &root in chunks.remainder() {
            for (total, length) in totals.iter_mut().zip(walk(root)) {
                *total += length;
            }
        }
        totals.map(|total| self.normalise(total))
    }

    /// s = 2^(−mean/c(ψ)) from the summed path lengths of every tree.
    fn normalise(&self, total: f64) -> f64 {
        let mean = total / self.roots.len().max(1) as f64;
        if self.c_sample > 0.0 {
            (-mean / self.c_sample).exp2()
        } else {
            1.0
        }
    }

    /// The same forest in the previous layout (16-byte nodes with `f64` thresholds, compared
    /// directly): the baseline of the detect bench and of the equality test.
    pub(crate) fn reference(&self) -> ReferenceForest {
        let nodes = self
            .nodes
            .iter()
            .map(|node| WideNode {
                threshold: self.threshold(*node),
                feature: node.feature() as u32,
                left: node.left() as u32,
            })
            .collect();
        ReferenceForest {
            nodes,
            forest: Forest {
                nodes: Vec::new(),
                cuts: Vec::new(),
                path_length: self.path_length.clone(),
                depth: self.depth,
                roots: self.roots.clone(),
                c_sample: self.c_sample,
            },
        }
    }

    pub(crate) fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// A node's split threshold in scaled units (+∞ at a leaf, which sends every row left).
    fn threshold(&self, node: Node) -> f64 {
        self.cuts
            .get(node.feature())
            .and_then(|cuts| cuts.get(node.key as usize))
            .copied()
            .unwrap_or(f64::INFINITY)
    }
}

/// Collects each feature's distinct split thresholds (`exact`, +∞ at leaves) in increasing
/// order and sets every split's `key` to its threshold's index there.
fn rank_thresholds(nodes: &mut [Node], exact: &[f64], n_features: usize) -> Vec<Vec<f64>> {
    let mut cuts = vec![Vec::new(); n_features];
    let splits = || {
        nodes
            .iter()
            .zip(exact)
            .filter(|(_, threshold)| threshold.is_finite())
    };
    for (node, threshold) in splits() {
        cuts[node.feature()].push(*threshold);
    }
    for feature_cuts in &mut cuts {
        // Thresholds are finite (compile refuses others), so the order is total; 0.0 and
        // −0.0 compare equal and become one cut, as they are one threshold to `>`.
        feature_cuts.sort_unstable_by(f64::total_cmp);
        feature_cuts.dedup_by(|a, b| a == b);
    }
    for (node, threshold) in nodes.iter_mut().zip(exact) {
        if threshold.is_finite() {
            node.key = rank(&cuts[node.feature()], *threshold);
        }
    }
    cuts
}

/// The node layout before issue 20: 16 bytes, `f64` threshold compared directly.
#[derive(Clone, Copy, Debug, PartialEq)]
struct WideNode {
    threshold: f64,
    feature: u32,
    left: u32,
}

/// A compiled forest in the previous layout, scored with the previous kernel.
#[derive(Clone, Debug)]
pub(crate) struct ReferenceForest {
    nodes: Vec<WideNode>,
    /// Roots, depths and leaf path lengths (its own node arrays are empty).
    forest: Forest,
}

impl ReferenceForest {
    pub(crate) fn score(&self, x: &[f64]) -> f64 {
        let step = |idx: usize| {
            let node = self.nodes[idx];
            node.left as usize + usize::from(x[node.feature as usize] > node.threshold)
        };
        let forest = &self.forest;
        let mut total = 0.0;
        let mut chunks = forest.roots.chunks_exact(LANES);
        for chunk in &mut chunks {
            let mut idx = [0usize; LANES];
            for (lane, root) in idx.iter_mut().zip(chunk) {
                *lane = *root as usize;
            }
            for _ in 0..forest.depth {
                for lane in &mut idx {
                    *lane = step(*lane);
                }
            }
            total += idx
                .iter()
                .map(|lane| forest.path_length[*lane])
                .sum::<f64>();
        }
        for &root in chunks.remainder() {
            let mut idx = root as usize;
            for _ in 0..forest.depth {
                idx = step(idx);
            }
            total += forest.path_length[idx];
        }
        forest.normalise(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn average_path_length_matches_scikit_learn() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // sklearn.ensemble._iforest._average_path_length([256]) == 10.244770920116851
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }

    #[test]
    fn height_limit_is_ceil_log2() {
        for (psi, expected) in [(2, 1), (3, 2), (4, 2), (5, 3), (255, 8), (256, 8), (257, 9)] {
            assert_eq!(height_limit(psi), expected, "psi {psi}");
        }
    }

    fn grown(n_rows: usize) -> (Vec<f64>, TreeFile) {
        let rows: Vec<f64> = (0..n_rows)
            .flat_map(|i| [i as f64, (i % 7) as f64])
            .collect();
        let mut sample: Vec<u32> = (0..n_rows as u32).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let tree = grow_tree(&rows, 2, &mut sample, height_limit(n_rows as u32), &mut rng);
        (rows, tree)
    }

    #[test]
    fn grown_tree_compiles_and_isolates_an_outlier() {
        let (_, tree) = grown(64);
        let leaves: u32 = (0..tree.len())
            .filter(|i| tree.left[*i] == FILE_LEAF)
            .map(|i| tree.n_samples[i])
            .sum();
        assert_eq!(leaves, 64, "every sampled row ends in exactly one leaf");
        let forest =
            Forest::compile(std::slice::from_ref(&tree), 2, 64).expect("a grown tree is valid");
        assert_eq!(forest.n_nodes(), tree.len());
        let inlier = forest.score(&[32.0, 3.0]);
        let outlier = forest.score(&[1000.0, 3.0]);
        assert!(outlier > inlier, "outlier {outlier} inlier {inlier}");
        assert!(outlier > 0.0 && outlier <= 1.0);
    }

    /// One file tree's path length for `x`, walked on the file's own `f64` arrays.
    fn file_path_length(tree: &TreeFile, x: &[f64]) -> f64 {
        let (mut node, mut depth) = (0usize, 0u32);
        while tree.left[node] != FILE_LEAF {
            let go_right = x[tree.feature[node] as usize] > tree.threshold[node];
            node = if go_right {
                tree.right[node]
            } else {
                tree.left[node]
            } as usize;
            depth += 1;
        }
        f64::from(depth) + average_path_length(tree.n_samples[node])
    }

    /// The score straight from the file trees, summed in the compiled kernel's order (lanes
    /// of 8 trees, then the rest), so it must agree to the bit.
    fn file_score(trees: &[TreeFile], sample_size: u32, x: &[f64]) -> f64 {
        let mut chunks = trees.chunks_exact(8);
        let mut total = 0.0;
        for chunk in &mut chunks {
            total += chunk
                .iter()
                .map(|tree| file_path_length(tree, x))
                .sum::<f64>();
        }
        for tree in chunks.remainder() {
            total += file_path_length(tree, x);
        }
        let mean = total / trees.len() as f64;
        (-mean / average_path_length(sample_size)).exp2()
    }

    #[test]
    fn compact_layout_scores_exactly_as_the_f64_layout() {
        // A 100-tree forest on rows with repeated values and values within one f32 step of
        // each other, scored on random points and on every threshold and its f64/f32
        // neighbours, by the ranked kernel, by the 16-byte reference layout and straight
        // from the file trees' f64 thresholds: all three agree to the bit.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n_rows = 512;
        let rows: Vec<f64> = (0..n_rows * 3)
            .map(|i| match i % 3 {
                0 => rng.random_range(-3.0..3.0),
                1 => 1.0 + f64::from((i % 5) as u32) * 1e-9,
                _ => f64::from((i % 11) as u32),
            })
            .collect();
        let trees: Vec<TreeFile> = (0..100)
            .map(|_| {
                let mut sample = subsample(&mut rng, n_rows, 256);
                grow_tree(&rows, 3, &mut sample, height_limit(256), &mut rng)
            })
            .collect();
        let forest = Forest::compile(&trees, 3, 256).expect("grown trees are valid");
        let reference = forest.reference();
        let mut points: Vec<[f64; 3]> = (0..2000)
            .map(|_| {
                [
                    rng.random_range(-4.0..4.0),
                    rng.random_range(0.999_999..1.000_001),
                    rng.random_range(-1.0..12.0),
                ]
            })
            .collect();
        let mut at_threshold = 0;
        for tree in &trees {
            for (feature, threshold) in tree.feature.iter().zip(&tree.threshold) {
                let Ok(feature) = usize::try_from(*feature) else {
                    continue;
                };
                let near = f64::from(*threshold as f32);
                for value in [
                    *threshold,
                    threshold.next_up(),
                    threshold.next_down(),
                    near,
                    near.next_up(),
                    near.next_down(),
                ] {
                    let mut point = [0.5, 1.0, 5.0];
                    point[feature] = value;
                    at_threshold += usize::from(value == *threshold);
                    points.push(point);
                }
            }
        }
        for special in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e300, -1e300] {
            points.push([special, special, special]);
        }
        assert!(at_threshold > 1000, "{at_threshold} points on a threshold");
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for point in &points {
            let (new, old) = (forest.score(point), reference.score(point));
            let file = file_score(&trees, 256, point);
            assert!(
                same(new, file),
                "{point:?}: ranked {new} vs file trees {file}"
            );
            assert!(
                same(old, file),
                "{point:?}: f64 layout {old} vs file trees {file}"
            );
        }
        // Rows walked together score exactly as one at a time.
        for group in points.chunks_exact(ROWS) {
            let rows: [Ranks; ROWS] = std::array::from_fn(|row| forest.ranks(&group[row]));
            for (point, together) in group.iter().zip(forest.score_rows(&rows)) {
                let alone = forest.score(point);
                assert!(
                    same(together, alone),
                    "{point:?}: rows {together} vs alone {alone}"
                );
            }
        }
    }

    #[test]
    fn each_split_ranks_its_own_threshold() {
        let (_, tree) = grown(64);
        let forest = Forest::compile(std::slice::from_ref(&tree), 2, 64).expect("valid");
        let mut compiled: Vec<f64> = forest
            .nodes
            .iter()
            .map(|node| forest.threshold(*node))
            .filter(|threshold| threshold.is_finite())
            .collect();
        let mut file: Vec<f64> = (0..tree.len())
            .filter(|i| tree.left[*i] != FILE_LEAF)
            .map(|i| tree.threshold[i])
            .collect();
        compiled.sort_unstable_by(f64::total_cmp);
        file.sort_unstable_by(f64::total_cmp);
        assert_eq!(compiled, file);
        for (feature, cuts) in forest.cuts.iter().enumerate() {
            assert!(
                cuts.windows(2).all(|pair| pair[0] < pair[1]),
                "feature {feature}"
            );
            assert_eq!(rank(cuts, f64::NAN), 0);
            assert_eq!(rank(cuts, f64::INFINITY) as usize, cuts.len());
        }
    }

    #[test]
    fn constant_data_gives_a_single_leaf() {
        let rows = vec![5.0; 20];
        let mut sample: Vec<u32> = (0..10).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let tree = grow_tree(&rows, 2, &mut sample, 4, &mut rng);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.n_samples, vec![10]);
    }

    fn check_defect(edit: impl FnOnce(&mut TreeFile), expected: TreeDefect) {
        let (_, mut tree) = grown(16);
        edit(&mut tree);
        assert_eq!(Forest::compile(&[tree], 2, 16).err(), Some((0, expected)));
    }

    #[test]
    fn compile_refuses_hostile_trees() {
        check_defect(|tree| tree.left[0] = 10_000, TreeDefect::ChildOutOfBounds);
        check_defect(|tree| tree.right[0] = -7, TreeDefect::ChildOutOfBounds);
        check_defect(|tree| tree.left[0] = 0, TreeDefect::NodeReachedTwice);
        check_defect(
            |tree| tree.right[0] = tree.left[0],
            TreeDefect::NodeReachedTwice,
        );
        check_defect(|tree| tree.feature[0] = 2, TreeDefect::FeatureOutOfRange);
        check_defect(|tree| tree.feature[0] = -3, TreeDefect::FeatureOutOfRange);
        check_defect(
            |tree| tree.threshold[0] = f64::NAN,
            TreeDefect::NonFiniteThreshold,
        );
        check_defect(
            |tree| tree.threshold[0] = f64::INFINITY,
            TreeDefect::NonFiniteThreshold,
        );
        check_defect(
            |tree| {
                tree.n_samples.pop();
            },
            TreeDefect::RaggedArrays,
        );
        check_defect(|tree| tree.right[0] = FILE_LEAF, TreeDefect::HalfLeaf);
        check_defect(
            |tree| {
                tree.left[0] = FILE_LEAF;
                tree.right[0] = FILE_LEAF;
            },
            TreeDefect::UnreachableNode,
        );
        check_defect(
            |tree| {
                let leaf = (0..tree.len())
                    .rfind(|i| tree.left[*i] == FILE_LEAF)
                    .expect("a leaf");
                tree.n_samples[leaf] = 0;
            },
            TreeDefect::BadLeafCount,
        );
        let empty = TreeFile {
            left: vec![],
            right: vec![],
            feature: vec![],
            threshold: vec![],
            n_samples: vec![],
        };
        assert_eq!(
            Forest::compile(&[empty], 2, 16).err(),
            Some((0, TreeDefect::Empty))
        );
    }

    #[test]
    fn compile_refuses_a_chain_deeper_than_the_limit() {
        // A left-leaning chain of 6 splits over sample size 16 (limit 4).
        let depth = 6usize;
        let len = 2 * depth + 1;
        let mut tree = TreeFile {
            left: vec![FILE_LEAF; len],
            right: vec![FILE_LEAF; len],
            feature: vec![FILE_LEAF; len],
            threshold: vec![0.0; len],
            n_samples: vec![1; len],
        };
        for level in 0..depth {
            let node = 2 * level;
            tree.left[node] = (node + 2) as i64;
            tree.right[node] = (node + 1) as i64;
            tree.feature[node] = 0;
        }
        assert_eq!(
            Forest::compile(&[tree], 1, 16).err(),
            Some((0, TreeDefect::TooDeep))
        );
    }
}
