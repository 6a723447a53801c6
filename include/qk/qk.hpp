#pragma once
// Umbrella header: the whole public API of qk.
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/metrics.hpp"
#include "qk/core/pack.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/core/threads.hpp"
#include "qk/core/version.hpp"
