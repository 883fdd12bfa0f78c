//! keepalived.conf's lexical layer: files, includes, comments, words and
//! the block tree.
//!
//! keepalived reads a configuration line by line: the first word of a line
//! is a keyword and the rest are its arguments (unused ones are dropped
//! silently: "one keyword per line"). `{` and `}` are words of their own
//! even when glued to others; `{` opens a block for the line's keyword and
//! whatever follows it on the same line is a new line inside the block (so
//! `url { path /x }` is one `url` block holding `path /x`). `#` and `!`
//! outside double quotes start a comment. `include GLOB` splices files in,
//! relative to the including file's directory. Doing the same here lets the
//! semantic layer (`parse`) work on a tree and point at file and line.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a word came from, printed `FILE:LINE` in every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One problem in the configuration, at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub loc: Loc,
    pub msg: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

/// A keyword with its arguments, and its block when it opened one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub loc: Loc,
    pub keyword: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Node>>,
}

/// Includes nest at most this deep (keepalived's own limit is of the
/// same order); deeper is taken as an include loop.
const MAX_INCLUDE_DEPTH: usize = 8;

/// One line's words with their place.
struct Line {
    loc: Loc,
    words: Vec<String>,
}

/// Splits a line into words: comments removed, double quotes grouping
/// words (quotes dropped), `{` and `}` always words of their own.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    split_words(line, &mut out);
    out.into_iter().map(Cow::into_owned).collect()
}

/// [`words`] without copying: appends the line's words to `out`, each a
/// slice of `line` unless it holds a double quote (then the word is its
/// span with the quotes dropped, a new string). The configuration parser
/// spends most of its time here, so nothing is allocated for a word that
/// needs no change (`out` is reused from line to line).
fn split_words<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) {
    // A word is the span from its first character to the whitespace,
    // brace or comment that ends it; inside double quotes nothing ends it.
    let mut start: Option<usize> = None;
    let mut has_quote = false;
    let mut quoted = false;
    let mut end = line.len();
    let word = |start: &mut Option<usize>, has_quote: &mut bool, at: usize| {
        start.take().map(|s| {
            let span = &line[s..at];
            if std::mem::take(has_quote) {
                Cow::Owned(span.replace('"', ""))
            } else {
                Cow::Borrowed(span)
            }
        })
    };
    // Every character that matters is ASCII, so the scan goes by bytes and
    // decodes only the others (which may be whitespace: U+00A0, U+2003..).
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if quoted {
            match line[i..].find('"') {
                Some(k) => {
                    quoted = false;
                    i += k + 1;
                }
                None => i = bytes.len(),
            }
            continue;
        }
        match bytes[i] {
            b'"' => {
                quoted = true;
                has_quote = true;
                start.get_or_insert(i);
            }
            b'#' | b'!' => {
                end = i;
                break;
            }
            b'{' | b'}' => {
                out.extend(word(&mut start, &mut has_quote, i));
                out.push(Cow::Borrowed(&line[i..i + 1]));
            }
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => {
                out.extend(word(&mut start, &mut has_quote, i));
            }
            0x80.. => {
                let c = line[i..].chars().next().unwrap_or_default();
                if c.is_whitespace() {
                    out.extend(word(&mut start, &mut has_quote, i));
                } else {
                    start.get_or_insert(i);
                }
                i += c.len_utf8();
                continue;
            }
            _ => {
                start.get_or_insert(i);
            }
        }
        i += 1;
    }
    out.extend(word(&mut start, &mut has_quote, end));
}

/// Reads `path` and everything it includes into lines of words. Problems
/// (unreadable included files) are added to `diags`; an unreadable main
/// file is an error of its own.
fn read_lines(
    path: &Path,
    depth: usize,
    from: Option<&Loc>,
    lines: &mut Vec<Line>,
    diags: &mut Vec<Diag>,
) -> Result<(), String> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            let msg = format!("cannot read {}: {e}", path.display());
            return match from {
                Some(loc) => {
                    diags.push(Diag {
                        loc: loc.clone(),
                        msg,
                    });
                    Ok(())
                }
                None => Err(msg),
            };
        }
    };
    let file: Arc<str> = Arc::from(path.display().to_string());
    for (n, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: file.clone(),
            line: u32::try_from(n + 1).unwrap_or(u32::MAX),
        };
        let w = words(raw);
        if w.first().map(String::as_str) == Some("include") {
            let Some(pattern) = w.get(1) else {
                diags.push(Diag {
                    loc,
                    msg: "include without a file name".into(),
                });
                continue;
            };
            if depth >= MAX_INCLUDE_DEPTH {
                diags.push(Diag {
                    loc,
                    msg: format!("includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)"),
                });
                continue;
            }
            let base = path.parent().unwrap_or(Path::new("."));
            let full = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                base.join(pattern)
            };
            let found = expand_glob(&full);
            if found.is_empty() {
                // keepalived only warns here ("Config files missing") and
                // `-t` still succeeds: a missing include is no error.
                continue;
            }
            for f in found {
                read_lines(&f, depth + 1, Some(&loc), lines, diags)?;
            }
            continue;
        }
        if !w.is_empty() {
            lines.push(Line { loc, words: w });
        }
    }
    Ok(())
}

/// The files a pattern names, sorted (a plain path names itself if it
/// exists).
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let s = pattern.to_string_lossy();
    if !s.contains(['*', '?', '[']) {
        return if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            vec![]
        };
    }
    match glob::glob(&s) {
        Ok(paths) => {
            let mut v: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            v.sort();
            v
        }
        Err(_) => vec![],
    }
}

/// Builds the block tree of a file and its includes.
pub fn read_tree(path: &Path) -> Result<(Vec<Node>, Vec<Diag>), String> {
    let mut lines = Vec::new();
    let mut diags = Vec::new();
    read_lines(path, 0, None, &mut lines, &mut diags)?;
    let mut tree = TreeBuilder::default();
    for l in lines {
        let mut words: Vec<Cow<'_, str>> = l.words.into_iter().map(Cow::Owned).collect();
        tree.line(&l.loc, &mut words, &mut diags);
    }
    Ok((tree.finish(&mut diags), diags))
}

/// Builds the tree from text (for tests and for `--check` of stdin).
pub fn tree_of_text(name: &str, text: &str) -> (Vec<Node>, Vec<Diag>) {
    let file: Arc<str> = Arc::from(name);
    let mut diags = Vec::new();
    let mut tree = TreeBuilder::default();
    let mut words = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        words.clear();
        split_words(raw, &mut words);
        if words.is_empty() {
            continue;
        }
        let loc = Loc {
            file: file.clone(),
            line: u32::try_from(n + 1).unwrap_or(u32::MAX),
        };
        tree.line(&loc, &mut words, &mut diags);
    }
    (tree.finish(&mut diags), diags)
}

/// The block tree, built line by line.
struct TreeBuilder {
    /// `stack[0]` is the top level; each open block is pushed with the
    /// node that owns it.
    stack: Vec<(Option<Node>, Vec<Node>)>,
}

impl Default for TreeBuilder {
    fn default() -> Self {
        TreeBuilder {
            stack: vec![(None, Vec::new())],
        }
    }
}

impl TreeBuilder {
    /// Adds one line's words (taken out of `words`, which is left holding
    /// empty ones).
    fn line(&mut self, loc: &Loc, words: &mut [Cow<'_, str>], diags: &mut Vec<Diag>) {
        let stack = &mut self.stack;
        let mut i = 0;
        while i < words.len() {
            match &*words[i] {
                "}" => {
                    if stack.len() == 1 {
                        diags.push(Diag {
                            loc: loc.clone(),
                            msg: "extra '}' found".into(),
                        });
                    } else if let Some((Some(mut owner), body)) = stack.pop() {
                        owner.block = Some(body);
                        if let Some(top) = stack.last_mut() {
                            top.1.push(owner);
                        }
                    }
                    i += 1;
                }
                "{" => {
                    // A `{` alone opens the block of the statement just
                    // before it (`virtual_server ...` then `{` next line).
                    let top = stack.last_mut().map(|t| &mut t.1);
                    let prev = top.and_then(|b| match b.last() {
                        Some(n) if n.block.is_none() => b.pop(),
                        _ => None,
                    });
                    match prev {
                        Some(owner) => stack.push((Some(owner), Vec::new())),
                        None => {
                            diags.push(Diag {
                                loc: loc.clone(),
                                msg: "unexpected '{'".into(),
                            });
                            // Keep the braces balanced: an anonymous block.
                            stack.push((
                                Some(Node {
                                    loc: loc.clone(),
                                    keyword: String::new(),
                                    args: vec![],
                                    block: None,
                                }),
                                Vec::new(),
                            ));
                        }
                    }
                    i += 1;
                }
                _ => {
                    let start = i;
                    while i < words.len() && words[i] != "{" && words[i] != "}" {
                        i += 1;
                    }
                    let node = Node {
                        loc: loc.clone(),
                        keyword: std::mem::take(&mut words[start]).into_owned(),
                        args: words[start + 1..i]
                            .iter_mut()
                            .map(|w| std::mem::take(w).into_owned())
                            .collect(),
                        block: None,
                    };
                    if i < words.len() && words[i] == "{" {
                        stack.push((Some(node), Vec::new()));
                        i += 1;
                    } else if let Some(top) = stack.last_mut() {
                        top.1.push(node);
                    }
                }
            }
        }
    }

    /// Closes the blocks left open, each reported, and returns the tree.
    fn finish(mut self, diags: &mut Vec<Diag>) -> Vec<Node> {
        let stack = &mut self.stack;
        while stack.len() > 1 {
            if let Some((Some(mut owner), body)) = stack.pop() {
                diags.push(Diag {
                    loc: owner.loc.clone(),
                    msg: format!("missing '}}' for the block '{}' opened here", owner.keyword),
                });
                owner.block = Some(body);
                if let Some(top) = stack.last_mut() {
                    top.1.push(owner);
                }
            }
        }
        stack.pop().map(|t| t.1).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The lexer as it was before [`split_words`] (a `String` per word,
    /// built char by char): the reference its property test compares with.
    fn words_char_by_char(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut in_word = false;
        for c in line.chars() {
            if quoted {
                if c == '"' {
                    quoted = false;
                } else {
                    cur.push(c);
                }
                continue;
            }
            match c {
                '"' => {
                    quoted = true;
                    in_word = true;
                }
                '#' | '!' => break,
                '{' | '}' => {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    out.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            out.push(cur);
        }
        out
    }

    /// The tree builder as it was before [`TreeBuilder`] (words cloned
    /// into the nodes), with the old lexer: the reference for
    /// [`tree_of_text`].
    fn tree_of_text_as_before(name: &str, text: &str) -> (Vec<Node>, Vec<Diag>) {
        let file: Arc<str> = Arc::from(name);
        let mut diags = Vec::new();
        let lines = text.lines().enumerate().filter_map(|(n, raw)| {
            let w = words_char_by_char(raw);
            (!w.is_empty()).then(|| {
                (
                    Loc {
                        file: file.clone(),
                        line: u32::try_from(n + 1).unwrap_or(u32::MAX),
                    },
                    w,
                )
            })
        });
        let tree = build_tree_of_lines(lines, &mut diags);
        (tree, diags)
    }

    fn build_tree_of_lines(
        lines: impl Iterator<Item = (Loc, Vec<String>)>,
        diags: &mut Vec<Diag>,
    ) -> Vec<Node> {
        // stack[0] is the top level; each open block is pushed with the node
        // that owns it.
        let mut stack: Vec<(Option<Node>, Vec<Node>)> = vec![(None, Vec::new())];
        for (loc, words) in lines {
            let mut i = 0;
            while i < words.len() {
                match words[i].as_str() {
                    "}" => {
                        if stack.len() == 1 {
                            diags.push(Diag {
                                loc: loc.clone(),
                                msg: "extra '}' found".into(),
                            });
                        } else if let Some((Some(mut owner), body)) = stack.pop() {
                            owner.block = Some(body);
                            if let Some(top) = stack.last_mut() {
                                top.1.push(owner);
                            }
                        }
                        i += 1;
                    }
                    "{" => {
                        // A `{` alone opens the block of the statement just
                        // before it (`virtual_server ...` then `{` next line).
                        let top = stack.last_mut().map(|t| &mut t.1);
                        let prev = top.and_then(|b| match b.last() {
                            Some(n) if n.block.is_none() => b.pop(),
                            _ => None,
                        });
                        match prev {
                            Some(owner) => stack.push((Some(owner), Vec::new())),
                            None => {
                                diags.push(Diag {
                                    loc: loc.clone(),
                                    msg: "unexpected '{'".into(),
                                });
                                // Keep the braces balanced: an anonymous block.
                                stack.push((
                                    Some(Node {
                                        loc: loc.clone(),
                                        keyword: String::new(),
                                        args: vec![],
                                        block: None,
                                    }),
                                    Vec::new(),
                                ));
                            }
                        }
                        i += 1;
                    }
                    _ => {
                        let start = i;
                        while i < words.len() && words[i] != "{" && words[i] != "}" {
                            i += 1;
                        }
                        let node = Node {
                            loc: loc.clone(),
                            keyword: words[start].clone(),
                            args: words[start + 1..i].to_vec(),
                            block: None,
                        };
                        if i < words.len() && words[i] == "{" {
                            stack.push((Some(node), Vec::new()));
                            i += 1;
                        } else if let Some(top) = stack.last_mut() {
                            top.1.push(node);
                        }
                    }
                }
            }
        }
        while stack.len() > 1 {
            if let Some((Some(mut owner), body)) = stack.pop() {
                diags.push(Diag {
                    loc: owner.loc.clone(),
                    msg: format!("missing '}}' for the block '{}' opened here", owner.keyword),
                });
                owner.block = Some(body);
                if let Some(top) = stack.last_mut() {
                    top.1.push(owner);
                }
            }
        }
        stack.pop().map(|t| t.1).unwrap_or_default()
    }

    /// Lines of keepalived.conf-like text: keywords, arguments, braces
    /// glued or apart, quotes (closed or not), comments, Unicode spaces.
    fn conf_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("a".to_string()),
            Just("real_server".to_string()),
            Just("1.2.3.4".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("\"".to_string()),
            Just("#".to_string()),
            Just("!".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("\u{b}\u{c}\r".to_string()),
            Just("\u{85}".to_string()),
            Just("\u{a0}".to_string()),
            Just("\u{3000}x".to_string()),
            Just("\u{2003}".to_string()),
            Just("é".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            "[ -~]{0,3}",
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn the_lexer_yields_the_words_it_did(line in conf_text()) {
            prop_assert_eq!(words(&line), words_char_by_char(&line));
        }

        #[test]
        fn the_tree_is_the_one_built_before(text in conf_text()) {
            prop_assert_eq!(tree_of_text("p", &text), tree_of_text_as_before("p", &text));
        }
    }

    #[test]
    fn words_split_like_keepalived() {
        assert_eq!(words("  lb_algo rr  # comment"), ["lb_algo", "rr"]);
        assert_eq!(words("url{path /x}"), ["url", "{", "path", "/x", "}"]);
        assert_eq!(
            words(r#"misc_path "/bin/check a # b" ! x"#),
            ["misc_path", "/bin/check a # b"]
        );
        assert!(words("! all comment").is_empty());
    }

    #[test]
    fn blocks_nest_and_same_line_content_is_a_new_line() {
        let (t, d) = tree_of_text(
            "t",
            "a 1 {\n url { path /x status_code 999 }\n}\nb\n{\nc\n}\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.len(), 2);
        let a = &t[0];
        assert_eq!(
            (a.keyword.as_str(), a.args.as_slice()),
            ("a", &["1".to_string()][..])
        );
        let url = &a.block.as_ref().unwrap()[0];
        let path = &url.block.as_ref().unwrap()[0];
        assert_eq!(path.keyword, "path");
        assert_eq!(path.args, ["/x", "status_code", "999"]);
        assert_eq!(t[1].keyword, "b");
        assert_eq!(t[1].block.as_ref().unwrap()[0].keyword, "c");
    }

    #[test]
    fn unbalanced_braces_are_reported_at_their_line() {
        let (_, d) = tree_of_text("f", "a {\n b\n");
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "f:1: missing '}' for the block 'a' opened here"
        );
        let (_, d) = tree_of_text("f", "a\n}\n");
        assert_eq!(d[0].to_string(), "f:2: extra '}' found");
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let dir = std::env::temp_dir().join(format!("uvs-lex-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("main.conf"), "a {\ninclude conf.d/*.conf\n}\n").unwrap();
        std::fs::write(dir.join("conf.d/1.conf"), "b 1\n").unwrap();
        std::fs::write(dir.join("conf.d/2.conf"), "b 2\ninclude ../main.conf\n").unwrap();
        let (t, d) = read_tree(&dir.join("main.conf")).unwrap();
        let body = t[0].block.as_ref().unwrap();
        assert_eq!(body[0].args, ["1"]);
        assert_eq!(body[1].args, ["2"]);
        assert!(body[1].loc.file.ends_with("2.conf"));
        assert!(d.iter().any(|d| d.msg.contains("nested deeper")), "{d:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
