//! `precept data check`: validate every record of a dataset and measure its token lengths.

use anyhow::{bail, Context, Result};
use precept_data::{OnMismatch, PrefReader, PreparationStats, PrepareOptions, SftPreparer, SftReader, SftRecord};
use serde::Serialize;

use crate::args::{DataCheckArgs, DataFormat, MismatchArg};
use crate::loaded::TextModel;
use crate::output::{outln, print_json};

#[derive(Serialize)]
struct CheckReport {
    file: String,
    errors: usize,
    /// Valid preference pairs (`--format prefs`); each counts as two records below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pairs: Option<usize>,
    #[serde(flatten)]
    stats: PreparationStats,
    /// Token-length percentiles of the prepared examples: p50, p90, p99, max.
    length_percentiles: [usize; 4],
    first_errors: Vec<String>,
}

/// Checks `args.file`; fails (exit code 1) when any record is invalid.
pub fn run(args: &DataCheckArgs) -> Result<()> {
    let text_model = TextModel::open(&args.model)?;
    let tokenizer = &text_model.tokenizer;
    let template = tokenizer.chat_template().context("the model folder has no chat template")?;
    let options = PrepareOptions {
        max_length: args.max_length,
        on_mismatch: match args.on_mismatch {
            MismatchArg::Error => OnMismatch::Error,
            MismatchArg::Warn => OnMismatch::Warn,
        },
    };
    let mut preparer = SftPreparer::new(tokenizer, template, options);
    let (mut lengths, mut errors, mut first_errors) = (Vec::new(), 0usize, Vec::new());
    // Each record as the conversations it trains: one for SFT, chosen and rejected for pairs.
    let records: Box<dyn Iterator<Item = (usize, precept_data::Result<Vec<SftRecord>>)>> = match args.format {
        DataFormat::Sft => Box::new(SftReader::open(&args.file)?.map(|(line, r)| (line, r.map(|r| vec![r])))),
        DataFormat::Prefs => Box::new(
            PrefReader::open(&args.file)?.map(|(line, r)| (line, r.map(|pair| vec![pair.chosen, pair.rejected]))),
        ),
    };
    let mut pairs = 0usize;
    for (line, sides) in records {
        let prepared = sides.and_then(|sides| {
            sides.iter().map(|side| preparer.prepare(side, &args.file, line)).collect::<precept_data::Result<Vec<_>>>()
        });
        match prepared {
            Ok(examples) => {
                pairs += 1;
                lengths.extend(examples.into_iter().flatten().map(|example| example.len()));
            }
            Err(error) => {
                errors += 1;
                if first_errors.len() < args.show_errors {
                    first_errors.push(error.to_string());
                }
            }
        }
    }
    if pairs == 0 && errors == 0 {
        bail!("{}: the file holds no records (it is empty or has only blank lines)", args.file.display());
    }
    lengths.sort_unstable();
    let percentile = |q: f64| lengths.get(((lengths.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    let report = CheckReport {
        file: args.file.display().to_string(),
        errors,
        pairs: matches!(args.format, DataFormat::Prefs).then_some(pairs),
        stats: preparer.into_stats(),
        length_percentiles: [percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0)],
        first_errors,
    };
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report)?;
    }
    if errors > 0 {
        bail!("{}: {errors} invalid record(s)", report.file);
    }
    Ok(())
}

fn print_report(report: &CheckReport) -> Result<()> {
    for error in &report.first_errors {
        outln!("error: {error}")?;
    }
    let s = &report.stats;
    let [p50, p90, p99, max] = report.length_percentiles;
    match report.pairs {
        Some(pairs) => {
            outln!("{}: {pairs} pairs ({} conversations), {} invalid", report.file, s.examples, report.errors)?;
        }
        None => outln!("{}: {} records, {} examples, {} invalid", report.file, s.records, s.examples, report.errors)?,
    }
    outln!("tokens: {} ({} trained); length p50 {p50}, p90 {p90}, p99 {p99}, max {max}", s.tokens, s.trained_tokens)?;
    outln!(
        "truncated {}, dropped for length {}, prompt/completion mismatches skipped {}",
        s.truncated,
        s.dropped_for_length,
        s.mismatches_skipped()
    )?;
    Ok(())
}
