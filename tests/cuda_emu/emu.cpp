// The CPU emulation of CUDA and cuBLAS behind tests/cuda_emu/include (see cuda_runtime.h there).
// x86-64 fibers switch stacks directly (below); PG_EMU_UCONTEXT selects the portable ucontext path.
#if defined(__x86_64__) && !defined(PG_EMU_UCONTEXT)
#define PG_EMU_FAST_SWITCH 1
#else
#include <ucontext.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/bfloat16.h"
#include "cublas_v2.h"
#include "cuda_runtime.h"

namespace pg_emu {

Position current;

namespace {

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
#ifdef PG_EMU_FAST_SWITCH
  void* sp = nullptr;  // the saved stack pointer
#else
  ucontext_t context;
#endif
  std::vector<char> stack;
  State state = State::Ready;
  uint3 index;
  int warp = 0, lane = 0;
};

constexpr size_t kStackBytes = 256 * 1024;

std::vector<Fiber> fibers(1024);
std::vector<unsigned char> warp_slots;  // 32 lanes x kSlotBytes per warp
void* scheduler_sp = nullptr;
Fiber* running = nullptr;
const std::function<void()>* body = nullptr;
std::exception_ptr failure;
cudaError_t last_error = cudaSuccess;

void run_body() {
  try {
    (*body)();
  } catch (...) {
    if (!failure) failure = std::current_exception();
  }
  running->state = State::Done;
}

#ifdef PG_EMU_FAST_SWITCH
// Fibers switch at every barrier, thousands of times per kernel: swapcontext's signal-mask
// system call would dominate, so x86-64 switches stacks directly. pg_emu_switch saves the
// callee-saved registers and the SSE/x87 control words on the current stack, stores the stack
// pointer in *from, and resumes the stack `to` saved the same way.
extern "C" void pg_emu_switch(void** from, void* to);
asm(R"(
  .text
  .globl pg_emu_switch
  .type pg_emu_switch, @function
pg_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pg_emu_switch, .-pg_emu_switch
)");

[[noreturn]] void fiber_entry() {
  run_body();
  void* unused;
  pg_emu_switch(&unused, scheduler_sp);  // never resumed
  __builtin_unreachable();
}

// A fresh stack that pg_emu_switch "returns" into fiber_entry from, with the current control
// words and the ABI's alignment (rsp = 8 mod 16 at a function's entry).
void start_fiber(Fiber& f) {
  auto top = reinterpret_cast<uintptr_t>(f.stack.data() + f.stack.size()) & ~uintptr_t{15};
  auto* p = reinterpret_cast<uint64_t*>(top);
  *--p = 0;  // fiber_entry's (never used) return address: rsp = 8 mod 16 at its entry
  *--p = reinterpret_cast<uint64_t>(&fiber_entry);
  for (int i = 0; i < 6; ++i) *--p = 0;  // rbp, rbx, r12-r15
  uint32_t mxcsr;
  uint16_t fpcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpcw));
  *--p = mxcsr | static_cast<uint64_t>(fpcw) << 32;
  f.sp = p;
}
void resume(Fiber& f) { pg_emu_switch(&scheduler_sp, f.sp); }
void suspend(State state) {
  running->state = state;
  pg_emu_switch(&running->sp, scheduler_sp);
}
#else
ucontext_t scheduler;
void fiber_main() { run_body(); }  // returns to uc_link: the scheduler

void start_fiber(Fiber& f) {
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack.data();
  f.context.uc_stack.ss_size = f.stack.size();
  f.context.uc_link = &scheduler;
  makecontext(&f.context, fiber_main, 0);
}
void resume(Fiber& f) { swapcontext(&scheduler, &f.context); }
void suspend(State state) {
  running->state = state;
  swapcontext(&running->context, &scheduler);
}
#endif

// The order in which ready threads run between barriers (PG_EMU_SCHEDULE). lockstep, the
// default: every ready thread runs, first to last, before any barrier is released, so a warp
// collective also holds the other warps back. warps-forward and warps-reverse: each warp in turn
// runs on its own as far as it can, through its own shuffles and ballots, until __syncthreads;
// warps-reverse also takes warps, lanes and blocks last to first. Between two block barriers
// the two warps-* schedules run any two warps in opposite orders, so a missing barrier between
// them shows up as a wrong result under one of them even where lockstep happens to satisfy it.
enum class Schedule { Lockstep, WarpsForward, WarpsReverse };

Schedule schedule() {
  static const Schedule chosen = [] {
    const char* v = std::getenv("PG_EMU_SCHEDULE");
    std::string s = v ? v : "lockstep";
    if (s == "lockstep") return Schedule::Lockstep;
    if (s == "warps-forward") return Schedule::WarpsForward;
    if (s == "warps-reverse") return Schedule::WarpsReverse;
    throw std::runtime_error(
        "PG_EMU_SCHEDULE must be lockstep, warps-forward or warps-reverse, got " + s);
  }();
  return chosen;
}

void run_fiber(Fiber& f) {
  running = &f;
  current.thread = f.index;
  resume(f);
  running = nullptr;
}

// A warps-* schedule's step for one warp: its lanes run (last to first if `reverse`) and its
// collectives are released as soon as every live lane reached them, until it waits at
// __syncthreads or ends.
void run_warp_ahead(unsigned warp, unsigned threads, bool reverse) {
  const unsigned lo = warp * 32, hi = std::min(threads, lo + 32);
  for (;;) {
    for (unsigned i = lo; i < hi; ++i) {
      Fiber& f = fibers[reverse ? hi - 1 - (i - lo) : i];
      if (f.state == State::Ready) run_fiber(f);
    }
    unsigned live = 0, waiting = 0;
    for (unsigned t = lo; t < hi; ++t) {
      live += fibers[t].state != State::Done;
      waiting += fibers[t].state == State::AtWarpBarrier;
    }
    if (live == 0 || waiting != live) return;
    for (unsigned t = lo; t < hi; ++t) fibers[t].state = State::Ready;
  }
}

// Runs every thread of one block to completion, releasing barriers as they fill.
void run_block(unsigned threads) {
  const dim3 bd = current.block_dim;
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    if (f.stack.empty()) f.stack.resize(kStackBytes);
    start_fiber(f);
    f.state = State::Ready;
    f.index = {t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
    f.warp = static_cast<int>(t / 32);
    f.lane = static_cast<int>(t % 32);
  }
  const unsigned warps = (threads + 31) / 32;
  std::vector<unsigned> live(warps), at_warp(warps);
  const Schedule order = schedule();
  for (;;) {
    if (order == Schedule::WarpsForward) {
      for (unsigned w = 0; w < warps; ++w) run_warp_ahead(w, threads, false);
    } else if (order == Schedule::WarpsReverse) {
      for (unsigned w = warps; w-- > 0;) run_warp_ahead(w, threads, true);
    } else {
      for (unsigned t = 0; t < threads; ++t)
        if (fibers[t].state == State::Ready) run_fiber(fibers[t]);
    }
    unsigned live_total = 0, at_block = 0;
    std::fill(live.begin(), live.end(), 0u);
    std::fill(at_warp.begin(), at_warp.end(), 0u);
    for (unsigned t = 0; t < threads; ++t) {
      State s = fibers[t].state;
      if (s == State::Done) continue;
      ++live_total;
      ++live[t / 32];
      if (s == State::AtBlockBarrier) ++at_block;
      if (s == State::AtWarpBarrier) ++at_warp[t / 32];
    }
    if (live_total == 0) return;
    bool released = false;
    if (at_block == live_total) {
      for (unsigned t = 0; t < threads; ++t)
        if (fibers[t].state == State::AtBlockBarrier) fibers[t].state = State::Ready;
      released = true;
    } else {
      for (unsigned t = 0; t < threads; ++t) {
        unsigned w = t / 32;
        if (fibers[t].state == State::AtWarpBarrier && at_warp[w] == live[w]) {
          fibers[t].state = State::Ready;
          released = true;
        }
      }
    }
    if (!released)
      throw std::runtime_error(
          "CUDA emulation: threads of a block wait at different barriers (a __syncthreads or "
          "warp collective not reached by every live thread) in block (" +
          std::to_string(current.block.x) + ", " + std::to_string(current.block.y) + ", " +
          std::to_string(current.block.z) + ")");
  }
}

}  // namespace

void block_barrier() { suspend(State::AtBlockBarrier); }
void warp_barrier() { suspend(State::AtWarpBarrier); }
int lane() { return running->lane; }
unsigned char* warp_slot(int lane) {
  return &warp_slots[(static_cast<size_t>(running->warp) * 32 + static_cast<size_t>(lane)) *
                     kSlotBytes];
}

void run_grid(dim3 grid, dim3 block, const std::function<void()>& f) {
  unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535 || threads == 0 || threads > 1024 || block.z > 64) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  const bool reverse = schedule() == Schedule::WarpsReverse;
  body = &f;
  failure = nullptr;
  current.block_dim = block;
  current.grid_dim = grid;
  warp_slots.assign((threads + 31) / 32 * 32 * kSlotBytes, 0);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        current.block =
            reverse ? uint3{grid.x - 1 - x, grid.y - 1 - y, grid.z - 1 - z} : uint3{x, y, z};
        run_block(static_cast<unsigned>(threads));
      }
  body = nullptr;
  if (failure) std::rethrow_exception(failure);
}

}  // namespace pg_emu

// --- the runtime API ---------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  size_t n = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, n);
  if (!p) return cudaErrorMemoryAllocation;
  std::memset(p, 0xff, n);  // NaN in every float: a kernel reading memory it never wrote shows
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  static int token;
  *stream = reinterpret_cast<cudaStream_t>(&token);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  cudaError_t e = pg_emu::last_error;
  pg_emu::last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) { return cudaGetErrorName(err); }

// --- cuBLAS ------------------------------------------------------------------------------------

namespace {

double element(const void* p, cudaDataType type, long long i) {
  switch (type) {
    case CUDA_R_32F:
      return static_cast<const float*>(p)[i];
    case CUDA_R_64F:
      return static_cast<const double*>(p)[i];
    case CUDA_R_16BF:
      return pg::bf16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
  return 0;
}

// C = alpha op(A) op(B) + beta C, column-major, after cuBLAS's checks of the arguments.
cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, double alpha,
                    const void* a, cudaDataType at, int lda, long long sa, const void* b,
                    cudaDataType bt, int ldb, long long sb, double beta, void* c, cudaDataType ct,
                    int ldc, long long sc, int batch) {
  if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) ||
      ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  for (int p = 0; p < batch; ++p)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l) {
          long long ia = ta == CUBLAS_OP_N ? i + 1ll * l * lda : l + 1ll * i * lda;
          long long ib = tb == CUBLAS_OP_N ? l + 1ll * j * ldb : j + 1ll * l * ldb;
          acc += element(a, at, p * sa + ia) * element(b, bt, p * sb + ib);
        }
        long long ic = p * sc + i + 1ll * j * ldc;
        double v = alpha * acc + (beta != 0 ? beta * element(c, ct, ic) : 0.0);
        if (ct == CUDA_R_32F)
          static_cast<float*>(c)[ic] = static_cast<float>(v);
        else
          static_cast<double*>(c)[ic] = v;
      }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

struct cublasContext {};

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void* alpha, const void* a, cudaDataType a_type,
                                          int lda, long long stride_a, const void* b,
                                          cudaDataType b_type, int ldb, long long stride_b,
                                          const void* beta, void* c, cudaDataType c_type, int ldc,
                                          long long stride_c, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
  // The combinations polygrad uses: f32 or bf16 inputs, f32 output, f32 compute.
  bool inputs_ok = a_type == b_type && (a_type == CUDA_R_32F || a_type == CUDA_R_16BF);
  if (!inputs_ok || c_type != CUDA_R_32F ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm(ta, tb, m, n, k, *static_cast<const float*>(alpha), a, a_type, lda, stride_a, b,
              b_type, ldb, stride_b, *static_cast<const float*>(beta), c, c_type, ldc, stride_c,
              batch);
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                         int m, int n, int k, const double* alpha, const double* a,
                                         int lda, long long stride_a, const double* b, int ldb,
                                         long long stride_b, const double* beta, double* c, int ldc,
                                         long long stride_c, int batch) {
  return gemm(ta, tb, m, n, k, *alpha, a, CUDA_R_64F, lda, stride_a, b, CUDA_R_64F, ldb, stride_b,
              *beta, c, CUDA_R_64F, ldc, stride_c, batch);
}
