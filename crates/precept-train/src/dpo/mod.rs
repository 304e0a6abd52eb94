//! Preference training: [`DpoConfig`] (the settings), [`PairPlan`] (which pairs each step sees),
//! [`Reference`] (cached or live reference log-probabilities) and [`train_dpo`] (the preference
//! objective on the shared loop).

mod config;
mod pairs;
mod reference;
mod train;

pub use config::{DpoConfig, PreferenceMethod};
pub use pairs::PairPlan;
pub use reference::{reference_logps, PairReference, Reference};
pub use train::train_dpo;
