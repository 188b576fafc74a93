//! `faultline campaign merge DIR... --out DIR`: one summary (and junit.xml, index.html)
//! from the summaries of a campaign's shards.
//!
//! The shards must have run the same campaign file (each summary carries its text);
//! the merged summary lists every cell of the campaign in campaign order, with the cells
//! of a shard that was not given as not run, so a lost shard can never look like a pass.
//! Paths are rebased so the merged page links into the shards' folders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::file::Source;
use super::matrix::Campaign;
use super::summary::{absolute, exit_code, relative, CellRecord, Counts, Summary, FORMAT};

pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Summary, String> {
    let mut summaries = Vec::new();
    for d in dirs {
        summaries.push((d.clone(), Summary::read(d)?));
    }
    let (first_dir, first) = summaries
        .first()
        .ok_or("merge needs at least one shard folder")?;
    for (d, s) in &summaries[1..] {
        if s.campaign.source != first.campaign.source {
            return Err(format!(
                "{} ran a different campaign file than {} (campaign `{}` vs `{}`)",
                d.display(),
                first_dir.display(),
                s.campaign.name,
                first.campaign.name
            ));
        }
    }
    let campaign = Campaign::load(&Source {
        path: PathBuf::from(&first.campaign.file),
        text: first.campaign.source.clone(),
    })
    .map_err(|e| {
        format!(
            "re-reading the campaign stored in {}: {e}",
            first_dir.display()
        )
    })?;

    let out_abs = absolute(out);
    let mut by_id: HashMap<String, (PathBuf, CellRecord)> = HashMap::new();
    let mut shards = Vec::new();
    for (d, s) in &summaries {
        for shard in &s.shards {
            if shards.contains(shard) {
                return Err(format!(
                    "shard {shard} is given twice (again in {})",
                    d.display()
                ));
            }
            shards.push(*shard);
        }
        for r in &s.cells {
            if let Some((other, _)) = by_id.get(&r.id) {
                return Err(format!(
                    "cell {} is in both {} and {}",
                    r.id,
                    other.display(),
                    d.display()
                ));
            }
            let mut r = r.clone();
            let base = absolute(d);
            for p in r.paths_mut() {
                if let Some(rel) = p.as_mut() {
                    *rel = relative(&base.join(&*rel), &out_abs).display().to_string();
                }
            }
            by_id.insert(r.id.clone(), (d.clone(), r));
        }
    }
    shards.sort_by_key(|s| (s.count, s.index));
    let cells: Vec<CellRecord> = campaign
        .cells
        .iter()
        .map(|c| match by_id.remove(&c.id) {
            Some((_, r)) => r,
            None => CellRecord::not_run(
                c,
                "no shard summary given to merge has this cell (a shard missing?)",
            ),
        })
        .collect();
    if let Some(id) = by_id.keys().next() {
        return Err(format!(
            "cell {id} is not in the campaign file the shards name"
        ));
    }
    let interrupted: Vec<String> = summaries
        .iter()
        .filter_map(|(d, s)| {
            s.interrupted
                .as_ref()
                .map(|i| format!("{}: {i}", d.display()))
        })
        .collect();
    let interrupted = (!interrupted.is_empty()).then(|| interrupted.join("; "));
    Ok(Summary {
        format: FORMAT,
        campaign: first.campaign.clone(),
        shards,
        started_at: summaries
            .iter()
            .map(|(_, s)| s.started_at.clone())
            .min()
            .unwrap_or_default(),
        wall_time_s: summaries
            .iter()
            .map(|(_, s)| s.wall_time_s)
            .fold(0.0, f64::max),
        jobs: first.jobs,
        budget_s: first.budget_s,
        counts: Counts::of(&cells),
        exit_code: exit_code(&cells, interrupted.is_some()),
        interrupted,
        cells,
    })
}
