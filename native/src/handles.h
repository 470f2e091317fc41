// JS handles for libtorch objects. A tensor handle is a JS object wrapping one reference
// to an at::Tensor; dispose() drops it early, the GC finalizer is the safety net.
#pragma once
#include <napi.h>
#include <ATen/ATen.h>

namespace difftune {

struct TensorHolder {
  at::Tensor tensor;
  int64_t accountedBytes = 0;  // what we told V8 about, so GC feels native memory
};

struct GeneratorHolder {
  at::Generator generator;
};

Napi::Value WrapTensor(Napi::Env env, at::Tensor tensor);
at::Tensor& UnwrapTensor(const Napi::Value& value, const char* what);
void DisposeTensor(Napi::Env env, TensorHolder* holder);
TensorHolder* FindHolder(const Napi::Value& value);  // null if not a live handle
void ReleaseHandle(const Napi::Value& value);          // dispose: drop the reference and the wrap
int64_t LiveTensorHandles();

Napi::Value WrapGenerator(Napi::Env env, at::Generator generator);
at::Generator& UnwrapGenerator(const Napi::Value& value, const char* what);

std::vector<int64_t> ToIntVector(const Napi::Value& value, const char* what);
Napi::Array FromIntArray(Napi::Env env, at::IntArrayRef values);
int64_t ToInt64(const Napi::Value& value, const char* what);

// Runs fn and turns libtorch/std exceptions into JS exceptions carrying the message.
template <typename Fn>
Napi::Value Guard(const Napi::CallbackInfo& info, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

void RegisterTensorApi(Napi::Env env, Napi::Object exports);
void RegisterDispatchApi(Napi::Env env, Napi::Object exports);
void RegisterAutogradApi(Napi::Env env, Napi::Object exports);
void RegisterRuntimeApi(Napi::Env env, Napi::Object exports);
void RegisterBlasApi(Napi::Env env, Napi::Object exports);

}  // namespace difftune
