// Process-wide runtime: seeds and generators, devices, threads, math-mode flags.
#include "handles.h"
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef DIFFTUNE_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace difftune {
namespace {

uint64_t ToSeed(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return s;
  }
  return static_cast<uint64_t>(ToInt64(v, "seed"));
}

// Seeds the default generators of every device, like torch.manual_seed.
Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    torch::manual_seed(ToSeed(info[0]));
    return info.Env().Undefined();
  });
}

at::Generator DefaultGenerator(const c10::Device& device) {
  if (device.is_cpu()) return at::detail::getDefaultCPUGenerator();
  return at::globalContext().defaultGenerator(device);
}

// newGenerator(device, seed) -> generator handle
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    c10::Device device(info[0].As<Napi::String>().Utf8Value());
    at::Generator gen;
    if (device.is_cpu()) {
      gen = at::make_generator<at::CPUGeneratorImpl>();
    } else {
#ifdef DIFFTUNE_CUDA
      gen = at::make_generator<at::CUDAGeneratorImpl>(device.has_index() ? device.index() : 0);
#else
      throw Napi::Error::New(info.Env(), "generators on " + device.str() + " need a CUDA build of the addon");
#endif
    }
    gen.set_current_seed(ToSeed(info[1]));
    return WrapGenerator(info.Env(), gen);
  });
}

// defaultGenerator(device) -> handle of the global generator (shares state with manualSeed).
Napi::Value GetDefaultGenerator(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    return WrapGenerator(info.Env(), DefaultGenerator(c10::Device(info[0].As<Napi::String>().Utf8Value())));
  });
}

Napi::Value GeneratorSeed(const Napi::CallbackInfo& info) {
  auto& gen = UnwrapGenerator(info[0], "generatorSeed");
  if (info.Length() > 1) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(ToSeed(info[1]));
  }
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(gen.current_seed()));
}

// The full RNG state as a uint8 tensor, so runs can resume bit for bit.
Napi::Value GeneratorGetState(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    auto& gen = UnwrapGenerator(info[0], "generatorGetState");
    std::lock_guard<std::mutex> lock(gen.mutex());
    return WrapTensor(info.Env(), gen.get_state());
  });
}

Napi::Value GeneratorSetState(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    auto& gen = UnwrapGenerator(info[0], "generatorSetState");
    auto& state = UnwrapTensor(info[1], "generatorSetState");
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return info.Env().Undefined();
  });
}

Napi::Value CudaIsAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
}

Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    int64_t index = info.Length() > 0 && info[0].IsNumber() ? ToInt64(info[0], "synchronize") : -1;
    torch::cuda::synchronize(index);
    return info.Env().Undefined();
  });
}

// cudaMemoryStats(index) -> {allocated, peakAllocated, reserved, peakReserved} in bytes, or null without CUDA.
Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
#ifdef DIFFTUNE_CUDA
  return Guard(info, [&]() -> Napi::Value {
    int index = static_cast<int>(ToInt64(info[0], "memoryStats"));
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    auto out = Napi::Object::New(info.Env());
    out.Set("allocated", static_cast<double>(stats.allocated_bytes[0].current));
    out.Set("peakAllocated", static_cast<double>(stats.allocated_bytes[0].peak));
    out.Set("reserved", static_cast<double>(stats.reserved_bytes[0].current));
    out.Set("peakReserved", static_cast<double>(stats.reserved_bytes[0].peak));
    return out;
  });
#else
  return info.Env().Null();
#endif
}

Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
#ifdef DIFFTUNE_CUDA
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  return info.Env().Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    at::set_num_threads(static_cast<int>(ToInt64(info[0], "setNumThreads")));
    return info.Env().Undefined();
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

// setMatmulPrecision('highest' | 'high' | 'medium'): 'high' allows TF32 on CUDA, as in Python.
Napi::Value SetMatmulPrecision(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    at::globalContext().setFloat32MatmulPrecision(info[0].As<Napi::String>().Utf8Value());
    return info.Env().Undefined();
  });
}

Napi::Value SetCudnnFlags(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    at::globalContext().setBenchmarkCuDNN(info[0].ToBoolean().Value());
    at::globalContext().setAllowTF32CuDNN(info[1].ToBoolean().Value());
    return info.Env().Undefined();
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  out.Set("torchVersion", TORCH_VERSION);
#ifdef DIFFTUNE_CUDA
  out.Set("cudaBuild", true);
#else
  out.Set("cudaBuild", false);
#endif
  out.Set("parallelInfo", at::get_parallel_info());
  return out;
}

// glibc's default heap heuristics return large freed blocks to the OS and map them again on
// the next step: every training step then page-faults its activations back in. Keeping
// blocks below 32 MiB on the heap and trimming only past 1 GiB removes that (measured:
// 3x fewer page faults per DiT step). DIFFTUNE_MALLOC=default keeps glibc's settings.
void TuneMalloc() {
#ifdef __GLIBC__
  const char* mode = std::getenv("DIFFTUNE_MALLOC");
  if (mode && std::string(mode) == "default") return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

}  // namespace

void RegisterRuntimeApi(Napi::Env env, Napi::Object exports) {
  TuneMalloc();
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed));
  exports.Set("newGenerator", Napi::Function::New(env, NewGenerator));
  exports.Set("defaultGenerator", Napi::Function::New(env, GetDefaultGenerator));
  exports.Set("generatorSeed", Napi::Function::New(env, GeneratorSeed));
  exports.Set("generatorGetState", Napi::Function::New(env, GeneratorGetState));
  exports.Set("generatorSetState", Napi::Function::New(env, GeneratorSetState));
  exports.Set("cudaIsAvailable", Napi::Function::New(env, CudaIsAvailable));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
  exports.Set("cudaSynchronize", Napi::Function::New(env, CudaSynchronize));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, CudaMemoryStats));
  exports.Set("cudaEmptyCache", Napi::Function::New(env, CudaEmptyCache));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("setMatmulPrecision", Napi::Function::New(env, SetMatmulPrecision));
  exports.Set("setCudnnFlags", Napi::Function::New(env, SetCudnnFlags));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
}

}  // namespace difftune
