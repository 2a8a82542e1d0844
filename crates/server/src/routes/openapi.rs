//! The OpenAPI document of every route, generated from the handlers' annotations and the
//! request and response types.

use super::{error, json};
use crate::compat::{
    ClassificationParameters, ClassifierInfo, EmbedRequest, EmbeddingValue, EncodingFormat,
    FunctionToApply, Info, LabelScore, ModelType, OpenAiEmbedding, OpenAiEmbeddingsRequest,
    OpenAiEmbeddingsResponse, OpenAiUsage, PredictRequest, TextClassificationRequest, TextInputs,
};
use axum::http::StatusCode;
use axum::response::Response;

/// `GET /openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "emotions",
        description = "go_emotions classification and sentence embeddings; TEI, Hugging Face Inference and OpenAI compatible routes."
    ),
    paths(
        super::native::classify,
        super::tei::predict,
        super::hf::hf_inference,
        super::tei::embed,
        super::openai::openai_embeddings,
        super::tei::info,
        super::health,
        super::labels,
        super::metrics_handler,
        openapi_json,
    ),
    components(schemas(
        TextInputs,
        PredictRequest,
        LabelScore,
        FunctionToApply,
        ClassificationParameters,
        TextClassificationRequest,
        EmbedRequest,
        EncodingFormat,
        OpenAiEmbeddingsRequest,
        EmbeddingValue,
        OpenAiEmbedding,
        OpenAiUsage,
        OpenAiEmbeddingsResponse,
        Info,
        ModelType,
        ClassifierInfo,
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This document")))]
pub(crate) async fn openapi_json() -> Response {
    use utoipa::OpenApi;
    match ApiDoc::openapi().to_json() {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "serialisation_error",
            e.to_string(),
        ),
    }
}
