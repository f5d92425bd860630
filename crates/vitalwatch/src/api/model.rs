//! `POST /api/model/reload`: reads the model file again without a restart.
//!
//! A refused file keeps the previous model in use and is answered 422 with the reason; the
//! attempt is audited either way (`model.reload`).

use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::model::{self, ReloadOutcome};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

/// The model now in use.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// Always `reloaded`.
    status: &'static str,
    sha256: String,
    /// The file's hash before; null when none was loaded.
    previous_sha256: Option<String>,
    /// What the model is, for people.
    model: String,
    n_trees: Option<usize>,
    /// The features it scores, in order.
    features: Option<Vec<&'static str>>,
    threshold: Option<f64>,
}

#[utoipa::path(
    post,
    path = "/api/model/reload",
    tag = "model",
    responses(
        (status = 200, description = "The model file was read again and is in use", body = Reloaded),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn reload(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Reloaded>, ApiError> {
    let slot = state.pipeline.model();
    let actor = who.actor();
    match model::reload_and_audit(slot, state.store.as_ref(), actor).await {
        ReloadOutcome::Loaded { sha256, previous } => {
            let status = slot.status();
            let info = slot.current().map(|model| model.info());
            Ok(Json(Reloaded {
                status: "reloaded",
                sha256,
                previous_sha256: previous,
                model: status.description,
                n_trees: info.as_ref().map(|info| info.n_trees),
                features: info.as_ref().map(|info| info.features.clone()),
                threshold: info.as_ref().map(|info| info.threshold),
            }))
        }
        ReloadOutcome::Refused { reason, kept } => {
            let detail = match kept {
                Some(sha256) => format!("{reason}; still using the model with sha256 {sha256}"),
                None => format!("{reason}; running on rules alone"),
            };
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "model_refused",
                detail,
            ))
        }
    }
}
