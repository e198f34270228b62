//! A line diff (longest common subsequence) between two versions of code, for
//! showing what changed from one converge iteration to the next.

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Beyond this many cells the LCS table is not built: the changed middle is
/// shown as removed whole, then added whole.
const MAX_CELLS: usize = 4_000_000;

/// The lines of `old` and `new` in order, each kept, removed or added, with
/// as few removals and additions as a longest common subsequence allows.
/// Within a changed stretch, removals come before additions.
pub fn lines<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Common ends are the usual case (one line changed); they need no table.
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);

    let mut out: Vec<Line> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        out.extend(am.iter().map(|l| Line::Removed(l)));
        out.extend(bm.iter().map(|l| Line::Added(l)));
    } else {
        middle(am, bm, &mut out);
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

fn middle<'a>(a: &[&'a str], b: &[&'a str], out: &mut Vec<Line<'a>>) {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // lcs[i * width + j]: the LCS length of a[i..] and b[j..].
    let mut lcs = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
}

/// How many lines were removed and added.
pub fn counts(diff: &[Line]) -> (usize, usize) {
    diff.iter().fold((0, 0), |(r, a), l| match l {
        Line::Removed(_) => (r + 1, a),
        Line::Added(_) => (r, a + 1),
        Line::Same(_) => (r, a),
    })
}

#[cfg(test)]
mod tests {
    use super::Line::*;
    use super::*;

    #[test]
    fn identical_texts_are_all_kept() {
        let text = "a\nb\nc\n";
        assert_eq!(lines(text, text), vec![Same("a"), Same("b"), Same("c")]);
        assert_eq!(counts(&lines(text, text)), (0, 0));
    }

    #[test]
    fn one_changed_line_is_removed_then_added() {
        let old = "#!/bin/bash\nset -e\nif then fi\n";
        let new = "#!/bin/bash\nset -e\necho converged > /etc/ok\n";
        assert_eq!(
            lines(old, new),
            vec![
                Same("#!/bin/bash"),
                Same("set -e"),
                Removed("if then fi"),
                Added("echo converged > /etc/ok"),
            ]
        );
    }

    #[test]
    fn insertions_and_deletions_keep_what_is_common() {
        assert_eq!(
            lines("a\nb\nc\nd\n", "a\nc\nx\nd\ny\n"),
            vec![
                Same("a"),
                Removed("b"),
                Same("c"),
                Added("x"),
                Same("d"),
                Added("y")
            ]
        );
        // The longest common run is kept, not the first match.
        assert_eq!(
            lines("x\na\nb\nc\n", "a\nb\nc\nx\n"),
            vec![Removed("x"), Same("a"), Same("b"), Same("c"), Added("x")]
        );
    }

    #[test]
    fn empty_sides() {
        assert_eq!(lines("", "a\nb"), vec![Added("a"), Added("b")]);
        assert_eq!(lines("a\nb", ""), vec![Removed("a"), Removed("b")]);
        assert_eq!(lines("", ""), vec![]);
    }

    #[test]
    fn repeated_lines_are_matched_once_each() {
        let diff = lines("x\nx\nx\n", "x\nx\n");
        assert_eq!(counts(&diff), (1, 0));
        assert_eq!(diff.iter().filter(|l| matches!(l, Same(_))).count(), 2);
    }

    #[test]
    fn huge_changes_fall_back_to_replace_whole() {
        let old: String = (0..2_100).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..2_100).map(|i| format!("new {i}\n")).collect();
        let diff = lines(&old, &new);
        assert_eq!(counts(&diff), (2_100, 2_100));
        assert_eq!(diff[0], Removed("old 0"));
        assert_eq!(diff[2_100], Added("new 0"));
    }
}
