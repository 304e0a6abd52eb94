//! [`OpenModel`]: how the gate and its judges get a generator for a [`ModelSource`] without
//! knowing what runs it (a model loaded onto a device, a client of servers, a test script).

use precept_data::{Generate, ModelSource};

use crate::error::{EvalError, Result};

/// Opens generators for model sources; the caller decides what runs them.
pub trait OpenModel {
    /// The generator it opens.
    type Generator: Generate + 'static;
    /// Why a model could not be opened.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A generator for `model`.
    fn open(&mut self, model: &ModelSource) -> Result<Self::Generator, Self::Error>;
}

/// Opens `model` for `role` (`base`, `tuned`, `judge`), naming both in the error.
pub(crate) fn open_model<M: OpenModel + ?Sized>(
    models: &mut M,
    role: &str,
    model: &ModelSource,
) -> Result<M::Generator> {
    models.open(model).map_err(|error| EvalError::Open {
        role: role.to_owned(),
        model: model.to_string(),
        error: Box::new(error),
    })
}
