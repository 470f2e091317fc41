#include "handles.h"

namespace difftune {

static int64_t OwnedBytes(const at::Tensor& t) {
  // Count only storage this handle is the sole owner of: views and aliases would double count.
  if (!t.defined() || !t.has_storage()) return 0;
  const auto& storage = t.storage();
  if (storage.use_count() != 1) return 0;
  return static_cast<int64_t>(storage.nbytes());
}

Napi::Value WrapTensor(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return env.Null();
  auto* holder = new TensorHolder{std::move(tensor), 0};
  holder->accountedBytes = OwnedBytes(holder->tensor);
  if (holder->accountedBytes) Napi::MemoryManagement::AdjustExternalMemory(env, holder->accountedBytes);
  return Napi::External<TensorHolder>::New(env, holder, [](Napi::Env env, TensorHolder* h) {
    DisposeTensor(env, h);
    delete h;
  });
}

void DisposeTensor(Napi::Env env, TensorHolder* holder) {
  if (holder->accountedBytes) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -holder->accountedBytes);
    holder->accountedBytes = 0;
  }
  holder->tensor.reset();
}

at::Tensor& UnwrapTensor(const Napi::Value& value, const char* what) {
  if (!value.IsExternal()) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + ": expected a tensor handle");
  }
  auto* holder = value.As<Napi::External<TensorHolder>>().Data();
  if (!holder->tensor.defined()) {
    throw Napi::Error::New(value.Env(), std::string(what) + ": the tensor was disposed");
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
