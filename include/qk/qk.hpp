#pragma once
// Umbrella header: the whole public API of qk, floor by floor (docs/design.md). scripts/check-layers.sh checks that
// every public header is here.

#include "qk/core/codebook.hpp"
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/metrics.hpp"
#include "qk/core/pack.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/core/threads.hpp"
#include "qk/core/version.hpp"

#include "qk/util/atomic_file.hpp"
#include "qk/util/isa.hpp"

#include "qk/calib/calib.hpp"
#include "qk/calib/entropy.hpp"
#include "qk/calib/histogram.hpp"
#include "qk/calib/mse.hpp"
#include "qk/calib/observer.hpp"
#include "qk/calib/percentile.hpp"

#include "qk/linalg/dense.hpp"
#include "qk/linalg/sgemm.hpp"

#include "qk/methods/awq.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/grid.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/methods/llm_int8.hpp"
#include "qk/methods/lsq.hpp"
#include "qk/methods/qat.hpp"
#include "qk/methods/rtn.hpp"
#include "qk/methods/smoothquant.hpp"

#include "qk/io/gguf.hpp"
#include "qk/io/llama2c.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"

#include "qk/formats/checkpoint.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/gptq_hf.hpp"
#include "qk/formats/tensor_values.hpp"

#include "qk/kernels/gemm.hpp"
#include "qk/kernels/isa.hpp"
#include "qk/kernels/weight_buffer.hpp"

#include "qk/model/convert.hpp"
#include "qk/model/llama_model.hpp"
#include "qk/model/tokenizer.hpp"
