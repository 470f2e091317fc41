#include "handles.h"
#include <atomic>

namespace difftune {

// Handles that still own a tensor reference: a leak detector for tests.
static std::atomic<int64_t> liveHandles{0};

int64_t LiveTensorHandles() { return liveHandles.load(); }

static int64_t OwnedBytes(const at::Tensor& t) {
  // Count only storage this handle is the sole owner of: views and aliases would double count.
  if (!t.defined() || !t.has_storage()) return 0;
  const auto& storage = t.storage();
  if (storage.use_count() != 1) return 0;
  return static_cast<int64_t>(storage.nbytes());
}

// A tensor handle is a plain JS object with the holder attached by napi_wrap. Unlike an
// External, a wrap can be removed: dispose() detaches and deletes the holder at once, so
// disposed tensors leave nothing behind for the (deferred) GC finalizers.
static void FinalizeHolder(napi_env env, void* data, void*) {
  auto* holder = static_cast<TensorHolder*>(data);
  DisposeTensor(Napi::Env(env), holder);
  delete holder;
}

Napi::Value WrapTensor(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return env.Null();
  auto* holder = new TensorHolder{std::move(tensor), 0};
  liveHandles++;
  holder->accountedBytes = OwnedBytes(holder->tensor);
  if (holder->accountedBytes) Napi::MemoryManagement::AdjustExternalMemory(env, holder->accountedBytes);
  Napi::Object obj = Napi::Object::New(env);
  napi_status status = napi_wrap(env, obj, holder, FinalizeHolder, nullptr, nullptr);
  if (status != napi_ok) {
    FinalizeHolder(env, holder, nullptr);
    throw Napi::Error::New(env, "could not create a tensor handle");
  }
  return obj;
}

void DisposeTensor(Napi::Env env, TensorHolder* holder) {
  if (holder->accountedBytes) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -holder->accountedBytes);
    holder->accountedBytes = 0;
  }
  if (holder->tensor.defined()) liveHandles--;
  holder->tensor.reset();
}

TensorHolder* FindHolder(const Napi::Value& value) {
  if (!value.IsObject()) return nullptr;
  void* data = nullptr;
  if (napi_unwrap(value.Env(), value, &data) != napi_ok) return nullptr;
  return static_cast<TensorHolder*>(data);
}

void ReleaseHandle(const Napi::Value& value) {
  void* data = nullptr;
  if (!value.IsObject() || napi_remove_wrap(value.Env(), value, &data) != napi_ok || !data) return;
  auto* holder = static_cast<TensorHolder*>(data);
  DisposeTensor(value.Env(), holder);
  delete holder;
}

at::Tensor& UnwrapTensor(const Napi::Value& value, const char* what) {
  TensorHolder* holder = FindHolder(value);
  if (!holder) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + ": expected a live tensor handle (was it disposed?)");
  }
  return holder->tensor;
}

Napi::Value WrapGenerator(Napi::Env env, at::Generator generator) {
  return Napi::External<GeneratorHolder>::New(
      env, new GeneratorHolder{std::move(generator)}, [](Napi::Env, GeneratorHolder* h) { delete h; });
}

at::Generator& UnwrapGenerator(const Napi::Value& value, const char* what) {
  if (!value.IsExternal()) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + ": expected a generator handle");
  }
  return value.As<Napi::External<GeneratorHolder>>().Data()->generator;
}

int64_t ToInt64(const Napi::Value& value, const char* what) {
  if (value.IsBigInt()) {
    bool lossless = true;
    int64_t v = value.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(value.Env(), std::string(what) + ": integer out of int64 range");
    return v;
  }
  if (!value.IsNumber()) throw Napi::TypeError::New(value.Env(), std::string(what) + ": expected an integer");
  double d = value.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + ": expected an integer, got " + std::to_string(d));
  }
  return static_cast<int64_t>(d);
}

std::vector<int64_t> ToIntVector(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), std::string(what) + ": expected an array of integers");
  auto arr = value.As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) out[i] = ToInt64(arr.Get(i), what);
  return out;
}

Napi::Array FromIntArray(Napi::Env env, at::IntArrayRef values) {
  auto arr = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(values[i])));
  return arr;
}

}  // namespace difftune
