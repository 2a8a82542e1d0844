//! The OpenAPI document of every route, generated from the handlers' annotations and the
//! request and response types.

use crate::compat::{
    ClassificationParameters, ClassifierInfo, EmbedRequest, EmbeddingValue, EncodingFormat,
    FunctionToApply, Info, LabelScore, ModelType, OpenAiEmbedding, OpenAiEmbeddingsRequest,
    OpenAiEmbeddingsResponse, OpenAiUsage, PredictRequest, TextClassificationRequest, TextInputs,
};

/// `GET /openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "emotions",
        description = "go_emotions classification and sentence embeddings; TEI, Hugging Face Inference and OpenAI compatible routes."
    ),
    paths(
        crate::classify,
        crate::predict,
        crate::hf_inference,
        crate::embed,
        crate::openai_embeddings,
        crate::info,
        crate::health,
        crate::labels,
        crate::metrics_handler,
        crate::openapi_json,
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
