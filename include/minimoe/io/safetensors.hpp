// minimoe/io/safetensors.hpp: read and write the safetensors format.
//
// Layout (the format of the Hugging Face `safetensors` package, so PyTorch tools read our
// weights and we read theirs):
//   8 bytes      N, little-endian uint64: the header's length
//   N bytes      JSON: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}, ...,
//                       "__metadata__": {"key": "string value", ...}}
//   the rest     tensor bytes, little-endian, row-major; offsets are relative to here
//
//   save_safetensors("w.safetensors", {{"weight", w}}, {{"config", "{...}"}});
//   SafetensorsFile f = SafetensorsFile::open("w.safetensors");
//   Tensor<float> w = f.tensor<float>("weight");
//
// The reader trusts nothing: the header length is checked against the file size and a
// maximum, the JSON is parsed strictly, every dtype, shape and offset is checked, offsets must
// lie inside the data and tile it without gaps or overlaps, and element counts must match the
// byte ranges. Any violation throws FormatError saying what is wrong.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/io/atomic_file.hpp"
#include "minimoe/tensor/tensor.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian and is read and written without swapping");

namespace minimoe {

// Headers beyond this are refused before anything is allocated for them.
inline constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;
// No header nests deeper than 3 levels; refusing deeper JSON as it is parsed bounds the
// recursion of nlohmann's dump(), which error messages call on parts of the header.
inline constexpr int kMaxSafetensorsDepth = 16;

enum class DType { F32, F64, F16, BF16, I32, I64, U8 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::U8:
      return "U8";
  }
  return "?";
}

inline int64_t dtype_size(DType d) {
  switch (d) {
    case DType::F64:
    case DType::I64:
      return 8;
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::U8:
      return 1;
  }
  return 0;
}

template <typename T>
constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                    std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> ||
                    std::is_same_v<T, uint8_t>,
                "no safetensors dtype for this type");
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  if constexpr (std::is_same_v<T, double>) return DType::F64;
  if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
  return DType::U8;
}

struct SafetensorsEntry {
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0;  // byte range in the data section
  uint64_t end = 0;
};

namespace detail {

inline float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int shift = 0;
    uint32_t m = mantissa;
    while (!(m & 0x400)) {
      m <<= 1;
      ++shift;
    }
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline DType parse_dtype(const nlohmann::json& value, const std::string& name) {
  check<FormatError>(value.is_string(), "safetensors: tensor '{}': dtype is not a string", name);
  const std::string s = value.get<std::string>();
  for (DType d :
       {DType::F32, DType::F64, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8})
    if (s == dtype_name(d)) return d;
  throw FormatError(fmt::format("safetensors: tensor '{}': unsupported dtype '{}'", name, s));
}

}  // namespace detail

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path) {
    try {
      return from_bytes(read_file(path));
    } catch (const FormatError& e) {
      throw FormatError(fmt::format("{}: {}", path, e.what()));
    }
  }

  // Parses a whole file held in memory.
  static SafetensorsFile from_bytes(std::string bytes) {
    SafetensorsFile f;
    f.bytes_ = std::move(bytes);
    f.parse();
    return f;
  }

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }

  const SafetensorsEntry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    check<FormatError>(it != entries_.end(), "safetensors: no tensor named '{}'", name);
    return it->second;
  }

  // The tensor converted to T (floating types convert between F64, F32, F16 and BF16).
  template <typename T>
  Tensor<T> tensor(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    Tensor<T> out(e.shape);
    const char* src = bytes_.data() + data_start_ + e.begin;
    const int64_t n = out.numel();
    T* dst = out.data();
    auto convert = [&](auto tag) {
      using From = decltype(tag);
      for (int64_t i = 0; i < n; ++i) {
        From v;
        std::memcpy(&v, src + i * sizeof(From), sizeof(From));
        dst[i] = static_cast<T>(v);
      }
    };
    const bool float_target = std::is_floating_point_v<T>;
    switch (e.dtype) {
      case DType::F32:
        check_kind(float_target, name, e);
        convert(float{});
        break;
      case DType::F64:
        check_kind(float_target, name, e);
        convert(double{});
        break;
      case DType::F16:
      case DType::BF16:
        check_kind(float_target, name, e);
        for (int64_t i = 0; i < n; ++i) {
          uint16_t h;
          std::memcpy(&h, src + 2 * i, 2);
          dst[i] = static_cast<T>(e.dtype == DType::F16 ? detail::half_to_float(h)
                                                        : detail::bf16_to_float(h));
        }
        break;
      case DType::I32:
        check_kind(!float_target, name, e);
        convert(int32_t{});
        break;
      case DType::I64:
        check_kind(!float_target, name, e);
        convert(int64_t{});
        break;
      case DType::U8:
        check_kind(!float_target, name, e);
        convert(uint8_t{});
        break;
    }
    return out;
  }

 private:
  static void check_kind(bool ok, const std::string& name, const SafetensorsEntry& e) {
    check<FormatError>(ok,
                       "safetensors: tensor '{}' has dtype {}, which does not convert to the "
                       "requested type",
                       name, dtype_name(e.dtype));
  }

  void parse() {
    check<FormatError>(bytes_.size() >= 8,
                       "safetensors: file of {} bytes is too short for a header", bytes_.size());
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i)
      header_size = (header_size << 8) | static_cast<unsigned char>(bytes_[static_cast<size_t>(i)]);
    check<FormatError>(header_size <= kMaxSafetensorsHeader,
                       "safetensors: header length {} exceeds the maximum {}", header_size,
                       kMaxSafetensorsHeader);
    check<FormatError>(header_size <= bytes_.size() - 8,
                       "safetensors: header length {} exceeds the file ({} bytes after the length)",
                       header_size, bytes_.size() - 8);
    data_start_ = 8 + header_size;
    const uint64_t data_size = bytes_.size() - data_start_;

    nlohmann::json header;
    try {
      header = nlohmann::json::parse(
          bytes_.begin() + 8, bytes_.begin() + static_cast<std::ptrdiff_t>(data_start_),
          [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
            check<FormatError>(depth <= kMaxSafetensorsDepth,
                               "safetensors: header nested deeper than {} levels",
                               kMaxSafetensorsDepth);
            return true;
          });
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(fmt::format("safetensors: header is not valid JSON: {}", e.what()));
    }
    check<FormatError>(header.is_object(), "safetensors: header is not a JSON object");

    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& item : header.items()) {
      const std::string& name = item.key();
      const nlohmann::json& value = item.value();
      if (name == "__metadata__") {
        check<FormatError>(value.is_object(), "safetensors: __metadata__ is not an object");
        for (const auto& m : value.items()) {
          check<FormatError>(m.value().is_string(),
                             "safetensors: metadata value of '{}' is not a string", m.key());
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      check<FormatError>(value.is_object() && value.contains("dtype") && value.contains("shape") &&
                             value.contains("data_offsets"),
                         "safetensors: tensor '{}' needs dtype, shape and data_offsets", name);
      SafetensorsEntry e;
      e.dtype = detail::parse_dtype(value["dtype"], name);
      const nlohmann::json& shape = value["shape"];
      check<FormatError>(shape.is_array(), "safetensors: tensor '{}': shape is not an array", name);
      for (const auto& extent : shape) {
        // Not check(): its arguments are evaluated first, and a dump per extent is quadratic.
        if (!extent.is_number_unsigned()) {
          throw FormatError(
              fmt::format("safetensors: tensor '{}': shape {} has a non-integer or negative extent",
                          name, shape.dump()));
        }
        check<FormatError>(extent.get<uint64_t>() <= static_cast<uint64_t>(kMaxNumel),
                           "safetensors: tensor '{}': extent {} too large", name, extent.dump());
        e.shape.push_back(extent.get<int64_t>());
      }
      int64_t numel = 0;
      try {
        numel = numel_of(e.shape);
      } catch (const ShapeError&) {
        throw FormatError(
            fmt::format("safetensors: tensor '{}': shape {} is too large", name, shape.dump()));
      }
      const nlohmann::json& offsets = value["data_offsets"];
      check<FormatError>(offsets.is_array() && offsets.size() == 2 &&
                             offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(),
                         "safetensors: tensor '{}': data_offsets must be two non-negative integers",
                         name);
      e.begin = offsets[0].get<uint64_t>();
      e.end = offsets[1].get<uint64_t>();
      check<FormatError>(
          e.begin <= e.end && e.end <= data_size,
          "safetensors: tensor '{}': data_offsets [{}, {}] outside the {} data bytes", name,
          e.begin, e.end, data_size);
      const uint64_t expected =
          static_cast<uint64_t>(numel) * static_cast<uint64_t>(dtype_size(e.dtype));
      check<FormatError>(e.end - e.begin == expected,
                         "safetensors: tensor '{}': {} bytes for shape {} of {} (expected {})",
                         name, e.end - e.begin, shape.dump(), dtype_name(e.dtype), expected);
      ranges.emplace_back(e.begin, e.end);
      entries_.emplace(name, std::move(e));
    }
    std::sort(ranges.begin(), ranges.end());
    uint64_t covered = 0;
    for (const auto& [begin, end] : ranges) {
      check<FormatError>(begin >= covered, "safetensors: tensors overlap at byte {}", begin);
      check<FormatError>(begin == covered, "safetensors: gap in the data at bytes [{}, {})",
                         covered, begin);
      covered = end;
    }
    check<FormatError>(covered == data_size,
                       "safetensors: {} trailing data bytes belong to no tensor",
                       data_size - covered);
  }

  std::string bytes_;
  uint64_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The file's bytes for these tensors (in the given order) and metadata.
template <typename T>
std::string safetensors_bytes(const std::vector<std::pair<std::string, Tensor<T>>>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    check<ValueError>(name != "__metadata__" && !header.contains(name),
                      "safetensors: duplicate or reserved tensor name '{}'", name);
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * sizeof(T);
    header[name] = {{"dtype", dtype_name(dtype_of<T>())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // align the data to 8 bytes
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  out += json;
  for (const auto& [name, t] : tensors) {
    const Tensor<T> c = t.contiguous();
    out.append(reinterpret_cast<const char*>(c.data()), static_cast<size_t>(c.numel()) * sizeof(T));
  }
  return out;
}

// Writes a safetensors file atomically (temporary file + rename).
template <typename T>
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor<T>>>& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
  const std::string bytes = safetensors_bytes(tensors, metadata);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

}  // namespace minimoe
