//! `emotions._emotions`: the Rust core behind `import emotions` (python/emotions/__init__.py
//! re-exports it; the stubs are python/emotions/__init__.pyi).
//!
//! Every call that runs the encoder or the head releases the GIL, so Python threads sharing one
//! [`Classifier`] run at once. Errors become Python exceptions with the library's messages
//! ([`py_error`]); a panic becomes pyo3's `PanicException`, never a crash.

use emotions::{
    DecisionPolicy, EncoderChoice, EncoderOptions, KernelThreads, LABELS, NUM_LABELS, Precision,
    Thresholds,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use std::path::PathBuf;
use std::sync::OnceLock;

pyo3::create_exception!(
    emotions,
    ModelError,
    PyException,
    "A model, encoder or head file that was found but refused (wrong graph, wrong shapes, a head and encoder that do not belong together)."
);

/// Texts read from an iterable at a time: memory is bounded by the chunk, and the results are
/// the same for any chunk size (the encoder sorts and batches within each call).
const CHUNK: usize = 1024;

/// The most threads a classifier takes, as the CLI's `--threads`.
const MAX_THREADS: usize = 256;

/// The Python exception for a library error: `FileNotFoundError` for a missing file, `ValueError`
/// for bad input (texts, embeddings, thresholds), `ModelError` for everything a model refused.
fn py_error(e: emotions::Error) -> PyErr {
    let message = e.to_string();
    if missing_file(&e) {
        return PyFileNotFoundError::new_err(message);
    }
    // Thresholds are the caller's input here, unlike the server's.
    if e.is_bad_input() || matches!(e, emotions::Error::Labels(_)) {
        PyValueError::new_err(message)
    } else {
        ModelError::new_err(message)
    }
}

/// A file that is not there: an `io::Error` of kind `NotFound` anywhere in the chain, or a
/// file an encoder folder lacks.
fn missing_file(e: &emotions::Error) -> bool {
    let not_found = |io: &std::io::Error| io.kind() == std::io::ErrorKind::NotFound;
    match e {
        emotions::Error::Encoder(enc) => match &enc.kind {
            emotions::EncoderErrorKind::MissingFile { .. } => return true,
            emotions::EncoderErrorKind::Io { source } if not_found(source) => return true,
            _ => {}
        },
        // Its kind says what the OS said, and is not a `source()` (labels crate).
        emotions::Error::Labels(l) => {
            if let emotions::LabelsErrorKind::Io { source } = &l.kind {
                return not_found(source);
            }
        }
        _ => {}
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(not_found) {
            return true;
        }
        source = s.source();
    }
    false
}

/// What a call was given as texts: one `str`, or a sequence or iterable of them.
enum Texts<'py> {
    One(String),
    Many(Bound<'py, PyAny>),
}

impl<'py> Texts<'py> {
    fn from_py(texts: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = texts.cast::<PyString>() {
            return Ok(Texts::One(s.to_cow()?.into_owned()));
        }
        if texts.try_iter().is_err() {
            return Err(PyTypeError::new_err(format!(
                "texts: expected a str or an iterable of str, found {}",
                type_name(texts)
            )));
        }
        Ok(Texts::Many(texts.clone()))
    }

    /// Calls `each(chunk)` on consecutive chunks of at most [`CHUNK`] texts, in order. A
    /// non-str item is a `TypeError` naming its index, raised before its chunk runs.
    fn for_each_chunk(&self, mut each: impl FnMut(&[String]) -> PyResult<()>) -> PyResult<()> {
        match self {
            Texts::One(t) => each(std::slice::from_ref(t)),
            Texts::Many(iterable) => {
                let mut chunk = Vec::with_capacity(CHUNK);
                for (index, item) in iterable.try_iter()?.enumerate() {
                    let item = item?;
                    let Ok(s) = item.cast::<PyString>() else {
                        return Err(PyTypeError::new_err(format!(
                            "texts[{index}]: expected str, found {}",
                            type_name(&item)
                        )));
                    };
                    chunk.push(s.to_cow()?.into_owned());
                    if chunk.len() == CHUNK {
                        each(&chunk)?;
                        chunk.clear();
                    }
                }
                if !chunk.is_empty() {
                    each(&chunk)?;
                }
                Ok(())
            }
        }
    }

    fn is_one(&self) -> bool {
        matches!(self, Texts::One(_))
    }
}

fn type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// One text's labels and scores, as `emotions classify` prints them.
#[pyclass(frozen, module = "emotions")]
struct Prediction {
    labels: Vec<&'static str>,
    scores: [f32; NUM_LABELS],
}

#[pymethods]
impl Prediction {
    /// The predicted labels, highest score first.
    #[getter]
    fn labels(&self) -> Vec<&'static str> {
        self.labels.clone()
    }

    /// Every label's score (probability of the label), in go_emotions label order.
    #[getter]
    fn scores<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (label, score) in LABELS.iter().zip(self.scores) {
            d.set_item(label, score)?;
        }
        Ok(d)
    }

    /// `{"labels": [...], "scores": {...}}`, the CLI's JSON line as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("labels", self.labels())?;
        d.set_item("scores", self.scores(py)?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("Prediction(labels={})", python_list(&self.labels))
    }
}

/// `['a', 'b']`, as Python prints a list of label names.
fn python_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Prediction {
    fn from_library(p: &emotions::Prediction) -> Self {
        Prediction {
            labels: p.labels(),
            scores: *p.scores(),
        }
    }
}

/// What `Classifier(...)` was asked for, kept to build the embeddings classifier on first use.
#[derive(Clone)]
struct Spec {
    model: Option<PathBuf>,
    thresholds: Option<Thresholds>,
    threshold: Option<f32>,
    top_k: Option<usize>,
    threads: usize,
}

impl Spec {
    fn builder(&self) -> emotions::ClassifierBuilder {
        let mut b = emotions::Classifier::builder().head_threads(self.threads);
        if let Some(path) = &self.model {
            b = b.head_path(path);
        }
        if let Some(t) = &self.thresholds {
            b = b.thresholds(*t);
        }
        if let Some(t) = self.threshold {
            b = b.fixed_threshold(t);
        }
        if let Some(k) = self.top_k {
            b = b.top_k(k);
        }
        b
    }
}

/// A go_emotions classifier: an encoder, a head and a decision policy, in Rust.
#[pyclass(frozen, module = "emotions")]
struct Classifier {
    /// Texts go through this one (the encoder with the head's adapter, when it has one).
    texts: emotions::Classifier,
    /// Embeddings given as input go to this one: the plain head for the plain embeddings
    /// `embed` returns, as `emotions classify --embeddings` does. Loaded on first use.
    embeddings: OnceLock<emotions::Classifier>,
    spec: Spec,
    precision: Precision,
    kernel_threads: KernelThreads,
    /// How a text longer than the encoder's window is read, and its windows' scores joined.
    long_texts: emotions::LongTexts,
    aggregate: emotions::Aggregate,
}

#[pymethods]
impl Classifier {
    #[new]
    #[pyo3(signature = (model=None, encoder=None, thresholds=None, threshold=None, top_k=None, precision=None, threads=None, long_texts="truncate", stride=None, aggregate=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        encoder: Option<PathBuf>,
        thresholds: Option<&Bound<'_, PyAny>>,
        threshold: Option<f32>,
        top_k: Option<i64>,
        precision: Option<&str>,
        threads: Option<i64>,
        long_texts: &str,
        stride: Option<i64>,
        aggregate: Option<&str>,
    ) -> PyResult<Self> {
        let stride = stride
            .map(|s| {
                usize::try_from(s).map_err(|_| {
                    PyValueError::new_err(format!(
                        "stride: expected a whole number >= 0, found {s}"
                    ))
                })
            })
            .transpose()?;
        let long_texts = match (long_texts, stride) {
            ("truncate", None) => emotions::LongTexts::Truncate,
            ("truncate", Some(_)) => {
                return Err(PyValueError::new_err(
                    "stride: only with long_texts='chunk'",
                ));
            }
            ("chunk", stride) => emotions::LongTexts::Chunk { stride },
            (other, _) => {
                return Err(PyValueError::new_err(format!(
                    "long_texts: expected 'truncate' or 'chunk', found {other:?}"
                )));
            }
        };
        let aggregate = match (aggregate, long_texts) {
            (None, _) => emotions::Aggregate::Max,
            (Some(_), emotions::LongTexts::Truncate) => {
                return Err(PyValueError::new_err(
                    "aggregate: only with long_texts='chunk'",
                ));
            }
            (Some("max"), _) => emotions::Aggregate::Max,
            (Some("mean"), _) => emotions::Aggregate::Mean,
            (Some(other), _) => {
                return Err(PyValueError::new_err(format!(
                    "aggregate: expected 'max' or 'mean', found {other:?}"
                )));
            }
        };
        let given = [thresholds.is_some(), threshold.is_some(), top_k.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(PyValueError::new_err(
                "give at most one of thresholds, threshold and top_k",
            ));
        }
        let top_k = top_k
            .map(|k| match usize::try_from(k) {
                Ok(k) if (1..=NUM_LABELS).contains(&k) => Ok(k),
                _ => Err(PyValueError::new_err(format!(
                    "top_k: expected 1 to {NUM_LABELS}, found {k}"
                ))),
            })
            .transpose()?;
        let threads = match threads {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=MAX_THREADS).contains(&n) => n,
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "threads: expected 1 to {MAX_THREADS}, found {n}"
                    )));
                }
            },
        };
        let precision = match precision {
            None => Precision::default(),
            Some(name) => Precision::from_name(name).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "precision: expected 'int16', 'int8' or 'f32', found {name:?}"
                ))
            })?,
        };
        let thresholds = thresholds.map(read_thresholds).transpose()?;
        let spec = Spec {
            model,
            thresholds,
            threshold,
            top_k,
            threads,
        };
        let options = EncoderOptions {
            workers: threads,
            precision,
            ..EncoderOptions::default()
        };
        let choice = encoder.map_or(EncoderChoice::Default, EncoderChoice::Dir);
        let kernel_threads =
            KernelThreads::new(threads).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let builder = spec.builder().encoder(choice).encoder_options(options);
        let texts = py.detach(|| builder.build()).map_err(py_error)?;
        if let emotions::LongTexts::Chunk { stride } = long_texts
            && let Some(encoder) = texts.encoder()
        {
            // A stride too large for the window is a bad argument now, not at the first text.
            encoder
                .chunk_stride(stride)
                .map_err(|e| PyValueError::new_err(format!("stride: {e}")))?;
        }
        Ok(Classifier {
            texts,
            embeddings: OnceLock::new(),
            spec,
            precision,
            kernel_threads,
            long_texts,
            aggregate,
        })
    }

    /// One `Prediction` per text (one, not a list, for a single `str`).
    fn predict<'py>(&self, py: Python<'py>, texts: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let texts = Texts::from_py(texts)?;
        let mut out = Vec::new();
        texts.for_each_chunk(|chunk| {
            let scores = self.run(py, || self.text_scores(chunk))?;
            let predictions = self.texts.policy().decide_rows(&scores);
            out.extend(predictions.iter().map(Prediction::from_library));
            Ok(())
        })?;
        if texts.is_one() {
            let one = out.pop().expect("one text gives one prediction");
            return Ok(Py::new(py, one)?.into_any());
        }
        let items = out
            .into_iter()
            .map(|p| Py::new(py, p))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any().unbind())
    }

    /// transformers' `pipeline("text-classification", top_k=None)` shape: for each text every
    /// label as `{"label": ..., "score": ...}`, highest score first.
    fn __call__<'py>(&self, py: Python<'py>, texts: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let texts = Texts::from_py(texts)?;
        let rows = PyList::empty(py);
        texts.for_each_chunk(|chunk| {
            let scores = self.run(py, || self.text_scores(chunk))?;
            for row in scores.chunks_exact(NUM_LABELS) {
                let mut order: Vec<usize> = (0..NUM_LABELS).collect();
                // Stable, so equal scores keep label order.
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let items = PyList::empty(py);
                for i in order {
                    let d = PyDict::new(py);
                    d.set_item("label", LABELS[i])?;
                    d.set_item("score", row[i])?;
                    items.append(d)?;
                }
                rows.append(items)?;
            }
            Ok(())
        })?;
        if texts.is_one() {
            return Ok(rows.get_item(0)?.unbind());
        }
        Ok(rows.into_any().unbind())
    }

    /// Scores as a float32 array `[N, 28]` in label order (`[28]` for a single `str`): of
    /// texts, or of `embeddings` (`[N, dim]` float32 or float64, e.g. from `embed`).
    #[pyo3(signature = (texts=None, *, embeddings=None))]
    fn scores<'py>(
        &self,
        py: Python<'py>,
        texts: Option<&Bound<'py, PyAny>>,
        embeddings: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match (texts, embeddings) {
            (Some(texts), None) => {
                let texts = Texts::from_py(texts)?;
                let mut out = Vec::new();
                texts.for_each_chunk(|chunk| {
                    out.extend(self.run(py, || self.text_scores(chunk))?);
                    Ok(())
                })?;
                to_array(py, out, NUM_LABELS, texts.is_one())
            }
            (None, Some(embeddings)) => {
                let classifier = self.embeddings_classifier(py)?;
                let (values, rows) = read_embeddings(embeddings, classifier.input_dim())?;
                // The head's messages name the row and column; this says of what.
                let out = self
                    .run(py, || classifier.scores(&values, rows))
                    .map_err(|e| in_context(py, "embeddings", e))?;
                to_array(py, out, NUM_LABELS, false)
            }
            _ => Err(PyValueError::new_err(
                "scores: give exactly one of texts and embeddings=",
            )),
        }
    }

    /// The plain encoder's sentence embeddings, float32 `[N, dim]` (`[dim]` for a single
    /// `str`), as `emotions embed` writes them.
    fn embed<'py>(&self, py: Python<'py>, texts: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let texts = Texts::from_py(texts)?;
        let dim = self.texts.input_dim();
        let mut out = Vec::new();
        texts.for_each_chunk(|chunk| {
            out.extend(self.run(py, || {
                Ok(self.texts.embed_long(chunk, self.long_texts)?.embeddings)
            })?);
            Ok(())
        })?;
        to_array(py, out, dim, texts.is_one())
    }

    /// The 28 go_emotions labels, in the order of the score columns.
    #[getter]
    fn labels(&self) -> Vec<&'static str> {
        LABELS.to_vec()
    }

    /// The per-label thresholds texts are decided with, as a dict; `None` under `top_k`.
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let values = match self.texts.policy() {
            DecisionPolicy::PerLabel(t) => *t.as_array(),
            DecisionPolicy::Fixed(t) => [*t; NUM_LABELS],
            DecisionPolicy::TopK(_) => return Ok(None),
        };
        let d = PyDict::new(py);
        for (label, t) in LABELS.iter().zip(values) {
            d.set_item(label, t)?;
        }
        Ok(Some(d))
    }

    /// `"int16"`, `"int8"` or `"f32"`: how the encoder's projections multiply.
    #[getter]
    fn precision(&self) -> &'static str {
        self.precision.name()
    }

    /// The threads each call runs on.
    #[getter]
    fn threads(&self) -> usize {
        self.spec.threads
    }

    /// The instruction-set class the kernels run (`EMOTIONS_ISA` forces one).
    #[getter]
    fn isa(&self) -> PyResult<String> {
        emotions::Isa::selected()
            .map(|i| i.to_string())
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Classifier(model={:?}, precision={:?}, threads={})",
            self.texts.head_info().origin,
            self.precision(),
            self.spec.threads
        )
    }
}

impl Classifier {
    /// Runs `work` without the GIL, on this classifier's kernel threads.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce() -> Result<T, emotions::Error> + Send,
    ) -> PyResult<T> {
        py.detach(|| self.kernel_threads.install(work))
            .map_err(py_error)
    }

    /// The text classifier's scores, `texts.len() * 28`.
    fn text_scores(&self, texts: &[String]) -> Result<Vec<f32>, emotions::Error> {
        Ok(self
            .texts
            .text_scores(texts, self.long_texts, self.aggregate)?
            .scores)
    }

    fn embeddings_classifier(&self, py: Python<'_>) -> PyResult<&emotions::Classifier> {
        if let Some(c) = self.embeddings.get() {
            return Ok(c);
        }
        let builder = self.spec.builder().encoder(EncoderChoice::None);
        let built = py.detach(|| builder.build()).map_err(py_error)?;
        Ok(self.embeddings.get_or_init(|| built))
    }
}

/// `e` with its message prefixed by `what: `, same exception class.
fn in_context(py: Python<'_>, what: &str, e: PyErr) -> PyErr {
    let message = format!("{what}: {}", e.value(py));
    let class = e.get_type(py);
    match class.call1((message,)) {
        Ok(value) => PyErr::from_value(value),
        Err(_) => e,
    }
}

/// The instruction-set classes this CPU runs, widest first: what `EMOTIONS_ISA` may name here.
#[pyfunction]
fn available_isas() -> Vec<&'static str> {
    emotions::Isa::all_available()
        .into_iter()
        .map(|i| i.class().name())
        .collect()
}

/// Thresholds from a path (`thresholds.json`), a dict of label → threshold, or a list of 28.
fn read_thresholds(given: &Bound<'_, PyAny>) -> PyResult<Thresholds> {
    if given.is_instance_of::<PyDict>() || given.is_instance_of::<PyList>() {
        let json: String = given
            .py()
            .import("json")?
            .call_method1("dumps", (given,))?
            .extract()
            .map_err(|_| PyValueError::new_err("thresholds: expected numbers"))?;
        return Thresholds::from_json_str(&json, "thresholds")
            .map_err(|e| py_error(emotions::Error::Labels(e)));
    }
    let Ok(path) = given.extract::<PathBuf>() else {
        return Err(PyTypeError::new_err(format!(
            "thresholds: expected a path, a dict of label to threshold, or a list of {NUM_LABELS}, found {}",
            type_name(given)
        )));
    };
    Thresholds::from_path(&path).map_err(|e| py_error(emotions::Error::Labels(e)))
}

/// Row-major float32 values and the row count of a `[N, dim]` float32 or float64 array.
/// float64 values must fit float32, which the head computes in.
fn read_embeddings(given: &Bound<'_, PyAny>, dim: usize) -> PyResult<(Vec<f32>, usize)> {
    let np = given.py().import("numpy")?;
    let array = np.call_method1("asarray", (given,))?;
    let shape: Vec<usize> = array.getattr("shape")?.extract()?;
    let dtype: String = array.getattr("dtype")?.str()?.extract()?;
    if shape.len() != 2 || shape[1] != dim {
        return Err(PyValueError::new_err(format!(
            "embeddings: expected shape (N, {dim}), found {shape:?}"
        )));
    }
    match dtype.as_str() {
        "float32" => {
            let a: PyReadonlyArray2<f32> =
                np.call_method1("ascontiguousarray", (array,))?.extract()?;
            Ok((a.as_slice()?.to_vec(), a.shape()[0]))
        }
        "float64" => {
            let a: PyReadonlyArray2<f64> =
                np.call_method1("ascontiguousarray", (array,))?.extract()?;
            let values = a.as_slice()?;
            let mut out = Vec::with_capacity(values.len());
            for (i, &v) in values.iter().enumerate() {
                if !v.is_finite() || v.abs() > f32::MAX as f64 {
                    return Err(PyValueError::new_err(format!(
                        "embeddings: row {}, column {}: expected a finite number within float32's range, found {v:?}",
                        i / dim,
                        i % dim
                    )));
                }
                out.push(v as f32);
            }
            Ok((out, a.shape()[0]))
        }
        other => Err(PyTypeError::new_err(format!(
            "embeddings: expected float32 or float64, found {other}"
        ))),
    }
}

/// A float32 array `[len / width, width]`, or `[width]` for one row when `one`.
fn to_array(py: Python<'_>, values: Vec<f32>, width: usize, one: bool) -> PyResult<Py<PyAny>> {
    let flat = PyArray1::from_vec(py, values);
    if one {
        return Ok(flat.into_any().unbind());
    }
    let rows = flat.len() / width;
    Ok(flat.reshape([rows, width])?.into_any().unbind())
}

#[pymodule]
fn _emotions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Classifier>()?;
    m.add_class::<Prediction>()?;
    m.add_function(wrap_pyfunction!(available_isas, m)?)?;
    m.add("ModelError", m.py().get_type::<ModelError>())?;
    m.add("LABELS", LABELS.to_vec())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
