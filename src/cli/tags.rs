//! `minipull tags REPO`: the repository's tags, one a line, from the
//! registry itself (a mirror lists only what it happens to hold), page by
//! page as its `Link` headers say, bounded (see [`crate::registry::Client::tags`]).

use super::connect::{sources, tls_settings};
use super::inspect::{print_json, print_text};
use super::*;
use crate::error::Quoted;

pub(super) fn tags_command(args: &Args) -> Result<i32> {
    let given = args.reference.as_str();
    let last = given.rsplit('/').next().unwrap_or("");
    if given.contains('@')
        || (given.contains('/') && last.contains(':'))
        || (!given.contains('/') && given.contains(':'))
    {
        return Err(
            Error::usage(format!("`minipull tags` takes a repository, not {}", Quoted(given)))
                .hint("drop the tag or digest: minipull tags REPO"),
        );
    }
    let page_size = match args.opts.flag("--page-size") {
        true => match args.opts.number("--page-size", 0)? {
            0 => return Err(Error::usage("--page-size must be at least 1")),
            n => Some(n.min(100_000)),
        },
        false => None,
    };
    let reference = Reference::parse(given)?;
    let progress = Progress::new(args.quiet);
    let tls = tls_settings(args, progress)?;
    let mut sources = sources(args, &reference, tls, progress)?;
    let tags = sources.registry()?.tags(page_size)?;
    if args.json {
        print_json(&serde_json::json!({ "repository": reference.name(), "tags": tags }));
    } else {
        print_text(&tags.join("\n"));
    }
    Ok(0)
}
