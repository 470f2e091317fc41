// Generic op calls through the c10 dispatcher: JS names an ATen operator once, gets an
// index, then calls it with positional arguments converted by the operator's schema.
// Autograd, autocast and device dispatch happen inside libtorch exactly as for Python.
#include "handles.h"
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <deque>
#include <unordered_map>

namespace difftune {
namespace {

struct OpEntry {
  c10::OperatorHandle handle;
  std::string name;
  std::vector<c10::Argument> arguments;
};

std::deque<OpEntry>& Ops() {
  static std::deque<OpEntry> ops;
  return ops;
}

// One entry per operator however often JS asks for it.
std::unordered_map<std::string, size_t>& OpIndex() {
  static std::unordered_map<std::string, size_t> index;
  return index;
}

[[noreturn]] void ArgError(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const std::string& expected) {
  throw Napi::TypeError::New(env, op.name + ": argument '" + arg.name() + "' expected " + expected);
}

double ToDouble(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const Napi::Value& v) {
  if (!v.IsNumber()) ArgError(env, op, arg, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t ToInt(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const Napi::Value& v) {
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  if (!v.IsNumber() && !v.IsBigInt()) ArgError(env, op, arg, "an integer");
  return ToInt64(v, (op.name + " '" + arg.name() + "'").c_str());
}

c10::IValue ToListIValue(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const c10::TypePtr& elem,
                         const Napi::Value& v) {
  auto kind = elem->kind();
  bool isInt = kind == c10::TypeKind::IntType || kind == c10::TypeKind::SymIntType;
  if (isInt && (v.IsNumber() || v.IsBigInt()) && arg.N()) {
    // int[2] stride=2 means [2, 2], as in Python.
    return c10::List<int64_t>(std::vector<int64_t>(*arg.N(), ToInt(env, op, arg, v)));
  }
  if (!v.IsArray()) ArgError(env, op, arg, "an array");
  auto arr = v.As<Napi::Array>();
  uint32_t n = arr.Length();
  if (isInt) {
    c10::List<int64_t> out;
    out.reserve(n);
    for (uint32_t i = 0; i < n; ++i) out.push_back(ToInt(env, op, arg, arr.Get(i)));
    return out;
  }
  switch (kind) {
    case c10::TypeKind::FloatType: {
      c10::List<double> out;
      for (uint32_t i = 0; i < n; ++i) out.push_back(ToDouble(env, op, arg, arr.Get(i)));
      return out;
    }
    case c10::TypeKind::BoolType: {
      c10::List<bool> out;
      for (uint32_t i = 0; i < n; ++i) out.push_back(arr.Get(i).ToBoolean().Value());
      return out;
    }
    case c10::TypeKind::TensorType: {
      c10::List<at::Tensor> out;
      out.reserve(n);
      for (uint32_t i = 0; i < n; ++i) out.push_back(UnwrapTensor(arr.Get(i), op.name.c_str()));
      return out;
    }
    case c10::TypeKind::OptionalType: {
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < n; ++i) {
        Napi::Value item = arr.Get(i);
        if (item.IsNull() || item.IsUndefined()) out.push_back(c10::nullopt);
        else out.push_back(UnwrapTensor(item, op.name.c_str()));
      }
      return out;
    }
    default:
      ArgError(env, op, arg, "a supported list type (got " + elem->str() + ")");
  }
}

c10::IValue ToIValue(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const Napi::Value& v) {
  c10::TypePtr type = arg.type();
  bool optional = type->kind() == c10::TypeKind::OptionalType;
  if (v.IsUndefined() && arg.default_value()) return *arg.default_value();
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return c10::IValue();
    ArgError(env, op, arg, "a value (it has no default)");
  }
  if (optional) type = type->expectRef<c10::OptionalType>().getElementType();
  switch (type->kind()) {
    case c10::TypeKind::TensorType:
      return UnwrapTensor(v, op.name.c_str());
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
    case c10::TypeKind::ScalarTypeType:
    case c10::TypeKind::LayoutType:
    case c10::TypeKind::MemoryFormatType:
      return ToInt(env, op, arg, v);
    case c10::TypeKind::FloatType:
      return ToDouble(env, op, arg, v);
    case c10::TypeKind::BoolType:
      return v.ToBoolean().Value();
    case c10::TypeKind::NumberType: {
      // A JS integer becomes an integral Scalar so int tensors keep their dtype.
      if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
      if (v.IsBigInt()) return c10::Scalar(ToInt(env, op, arg, v));
      double d = ToDouble(env, op, arg, v);
      if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.007199254740992e15) {
        return c10::Scalar(static_cast<int64_t>(d));
      }
      return c10::Scalar(d);
    }
    case c10::TypeKind::StringType:
      if (!v.IsString()) ArgError(env, op, arg, "a string");
      return v.As<Napi::String>().Utf8Value();
    case c10::TypeKind::DeviceObjType:
      if (!v.IsString()) ArgError(env, op, arg, "a device string such as 'cpu' or 'cuda:0'");
      return c10::Device(v.As<Napi::String>().Utf8Value());
    case c10::TypeKind::GeneratorType:
      return UnwrapGenerator(v, op.name.c_str());
    case c10::TypeKind::ListType:
      return ToListIValue(env, op, arg, type->expectRef<c10::ListType>().getElementType(), v);
    default:
      ArgError(env, op, arg, "a supported type (schema type " + type->str() + " is not bound)");
  }
}

Napi::Value FromIValue(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) return WrapTensor(env, v.toTensor());
  if (v.isNone()) return env.Null();
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(static_cast<uint32_t>(i), WrapTensor(env, list.get(i)));
    return arr;
  }
  if (v.isIntList()) {
    auto list = v.toIntVector();
    return FromIntArray(env, list);
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    auto arr = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); ++i) arr.Set(static_cast<uint32_t>(i), FromIValue(env, elems[i]));
    return arr;
  }
  if (v.isList()) {
    auto list = v.toListRef();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(static_cast<uint32_t>(i), FromIValue(env, list[i]));
    return arr;
  }
  throw Napi::TypeError::New(env, "op returned a value of unsupported type " + v.tagKind());
}

// findOp(name, overload) -> index. Throws with libtorch's message if unknown.
Napi::Value FindOp(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    std::string name = info[0].As<Napi::String>().Utf8Value();
    std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    std::string key = name + (overload.empty() ? "" : "." + overload);
    auto known = OpIndex().find(key);
    if (known != OpIndex().end()) return Napi::Number::New(info.Env(), static_cast<double>(known->second));
    auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!handle) {
      throw Napi::Error::New(info.Env(), "libtorch has no operator " + name + (overload.empty() ? "" : "." + overload));
    }
    const auto& schema = handle->schema();
    Ops().push_back(OpEntry{*handle, key, schema.arguments()});
    OpIndex()[key] = Ops().size() - 1;
    return Napi::Number::New(info.Env(), static_cast<double>(Ops().size() - 1));
  });
}

Napi::Value RunOp(const Napi::CallbackInfo& info, bool keepResult) {
  return Guard(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    size_t index = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
    if (index >= Ops().size()) throw Napi::RangeError::New(env, "unknown op index");
    const OpEntry& op = Ops()[index];
    size_t given = info.Length() - 1;
    if (given > op.arguments.size()) {
      throw Napi::TypeError::New(env, op.name + ": too many arguments (" + std::to_string(given) + ")");
    }
    torch::jit::Stack stack;
    stack.reserve(op.arguments.size());
    for (size_t i = 0; i < op.arguments.size(); ++i) {
      Napi::Value v = i < given ? info[i + 1] : env.Undefined();
      stack.push_back(ToIValue(env, op, op.arguments[i], v));
    }
    op.handle.callBoxed(&stack);
    if (!keepResult) return env.Undefined();
    if (stack.empty()) return env.Undefined();
    if (stack.size() == 1) return FromIValue(env, stack[0]);
    auto arr = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); ++i) arr.Set(static_cast<uint32_t>(i), FromIValue(env, stack[i]));
    return arr;
  });
}

Napi::Value CallOp(const Napi::CallbackInfo& info) { return RunOp(info, true); }
// For in-place ops: the result aliases an input the caller already holds.
Napi::Value CallOpVoid(const Napi::CallbackInfo& info) { return RunOp(info, false); }

Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  size_t index = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  if (index >= Ops().size()) throw Napi::RangeError::New(info.Env(), "unknown op index");
  std::ostringstream ss;
  ss << Ops()[index].handle.schema();
  return Napi::String::New(info.Env(), ss.str());
}

}  // namespace

void RegisterDispatchApi(Napi::Env env, Napi::Object exports) {
  exports.Set("findOp", Napi::Function::New(env, FindOp));
  exports.Set("call", Napi::Function::New(env, CallOp));
  exports.Set("callVoid", Napi::Function::New(env, CallOpVoid));
  exports.Set("opSchema", Napi::Function::New(env, OpSchema));
}

}  // namespace difftune
