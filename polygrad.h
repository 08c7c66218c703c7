// The whole public API of polygrad in one include.
#pragma once
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/backend.h"
#include "kernels/factory.h"
