// quantize_config.json of Hugging Face GPTQ checkpoints: writing it, and reading the keys we use (with the JSON
// parser of the file readers).
#include "qk/formats/gptq_hf.hpp"

#include <optional>
#include <string>

#include "util/json.hpp"

namespace qk::gptq_hf {

std::string to_json(const QuantizeConfig& c) {
  c.validate();
  return fmt::format(
      "{{\n  \"bits\": {},\n  \"group_size\": {},\n  \"damp_percent\": {},\n  \"desc_act\": {},\n"
      "  \"static_groups\": {},\n  \"sym\": {},\n  \"true_sequential\": {},\n  \"quant_method\": \"{}\",\n"
      "  \"checkpoint_format\": \"{}\"\n}}\n",
      c.bits, c.group_size, c.damp_percent, c.desc_act, c.static_groups, c.sym, c.true_sequential, c.quant_method,
      c.checkpoint_format);
}

QuantizeConfig config_from_json(std::string_view json, std::string_view what) {
  using util::Json;
  const std::string file(what);
  const Json root = util::JsonParser(json, file).document();
  if (root.kind != Json::Object) fail<FormatError>("{}: not a JSON object", what);
  // transformers' config.json holds the keys in "quantization_config"; quantize_config.json at the top level.
  const Json* inner = root.find("quantization_config");
  const Json& m = inner && inner->kind == Json::Object ? *inner : root;
  QuantizeConfig c;
  auto number = [&](const char* key, bool required) -> std::optional<double> {
    const Json* v = m.find(key);
    if (!v) {
      if (required) fail<FormatError>("{}: no \"{}\"", what, key);
      return std::nullopt;
    }
    if (v->kind != Json::Number) fail<FormatError>("{}: \"{}\" is not a number", what, key);
    return v->number;
  };
  auto boolean = [&](const char* key, bool& out) {
    const Json* v = m.find(key);
    if (!v || v->kind == Json::Null) return;
    if (v->kind != Json::Bool) fail<FormatError>("{}: \"{}\" is not true or false", what, key);
    out = v->b;
  };
  auto text = [&](const char* key, std::string& out) {
    const Json* v = m.find(key);
    if (!v || v->kind == Json::Null) return;
    if (v->kind != Json::String) fail<FormatError>("{}: \"{}\" is not a string", what, key);
    out = v->text;
  };
  const double bits = *number("bits", true);
  const double group = *number("group_size", true);
  if (bits != static_cast<int>(bits) || group != static_cast<int64_t>(group))
    fail<FormatError>("{}: bits and group_size must be integers", what);
  c.bits = static_cast<int>(bits);
  c.group_size = static_cast<int64_t>(group);
  if (auto d = number("damp_percent", false)) c.damp_percent = *d;
  boolean("desc_act", c.desc_act);
  boolean("sym", c.sym);
  boolean("static_groups", c.static_groups);
  boolean("true_sequential", c.true_sequential);
  text("quant_method", c.quant_method);
  text("checkpoint_format", c.checkpoint_format);
  try {
    c.validate();
  } catch (const FormatError& e) {
    fail<FormatError>("{}: {}", what, e.what());
  }
  return c;
}

}  // namespace qk::gptq_hf
