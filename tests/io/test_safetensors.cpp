#include <minimoe/io/safetensors.hpp>

#include <cstdio>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

std::string with_header(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((json.size() >> (8 * i)) & 0xff);
  return out + json + data;
}

std::string floats(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

}  // namespace

TEST_CASE("safetensors round trip with metadata, in order, aligned") {
  Tensor<float> a({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor<float> b = Tensor<float>({3, 2}, {7, 8, 9, 10, 11, 12}).transpose(0, 1);  // a view
  Tensor<float> empty({0, 4});
  const std::string bytes =
      safetensors_bytes<float>({{"a", a}, {"b", b}, {"empty", empty}}, {{"config", "{\"x\": 1}"}});
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  CHECK(header % 8 == 0);
  const SafetensorsFile f = SafetensorsFile::from_bytes(bytes);
  CHECK(f.metadata().at("config") == "{\"x\": 1}");
  CHECK(f.tensor<float>("a").to_vector() == a.to_vector());
  CHECK(f.tensor<float>("b").shape() == Shape{2, 3});
  CHECK(f.tensor<float>("b").to_vector() == std::vector<float>{7, 9, 11, 8, 10, 12});
  CHECK(f.tensor<double>("a").to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(f.tensor<float>("empty").shape() == Shape{0, 4});
  CHECK(f.entry("a").dtype == DType::F32);

  const std::string path = "test_safetensors_roundtrip.safetensors";
  save_safetensors<double>(path, {{"x", Tensor<double>({2}, {0.5, -1.5})}});
  CHECK(SafetensorsFile::open(path).tensor<double>("x").to_vector() ==
        std::vector<double>{0.5, -1.5});
  std::remove(path.c_str());
}

TEST_CASE("safetensors reads F16 and BF16") {
  // 1.0, -2.0, 0.5 in F16: 0x3c00, 0xc000, 0x3800; 1.0 in BF16: 0x3f80
  std::string data("\x00\x3c\x00\xc0\x00\x38\x80\x3f", 8);
  const std::string json =
      R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]}})";
  const SafetensorsFile f = SafetensorsFile::from_bytes(with_header(json, data));
  CHECK(f.tensor<float>("h").to_vector() == std::vector<float>{1.0f, -2.0f, 0.5f});
  CHECK(f.tensor<float>("b").to_vector() == std::vector<float>{1.0f});
}

TEST_CASE("safetensors rejects corrupt, truncated and inconsistent files with a reason") {
  const std::string ok_json = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data = floats({1, 2});
  CHECK_NOTHROW(SafetensorsFile::from_bytes(with_header(ok_json, data)));
  auto rejects = [](const std::string& bytes, const std::string& message) {
    CHECK_THROWS_WITH_AS(SafetensorsFile::from_bytes(bytes), message.c_str(), FormatError);
  };
  rejects("abc", "safetensors: file of 3 bytes is too short for a header");
  rejects(with_header(ok_json, data).substr(0, 20),
          "safetensors: header length 54 exceeds the file (12 bytes after the length)");
  std::string huge(8, '\xff');
  rejects(huge, "safetensors: header length 18446744073709551615 exceeds the maximum 104857600");
  try {
    SafetensorsFile::from_bytes(with_header("{\"w\": [1, 2", ""));
    FAIL("truncated JSON accepted");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()).rfind("safetensors: header is not valid JSON: ", 0) == 0);
  }
  rejects(with_header("[1]", ""), "safetensors: header is not a JSON object");
  rejects(with_header(R"({"w":{"dtype":"F32","shape":[2]}})", data),
          "safetensors: tensor 'w' needs dtype, shape and data_offsets");
  rejects(with_header(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", data),
          "safetensors: tensor 'w': unsupported dtype 'Q4'");
  rejects(with_header(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
          "safetensors: tensor 'w': shape [-2] has a non-integer or negative extent");
  rejects(with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
          "safetensors: tensor 'w': 8 bytes for shape [3] of F32 (expected 12)");
  rejects(with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data),
          "safetensors: tensor 'w': data_offsets [0, 16] outside the 8 data bytes");
  rejects(with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data),
          "safetensors: tensor 'w': data_offsets [8, 0] outside the 8 data bytes");
  rejects(with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data),
          "safetensors: 4 trailing data bytes belong to no tensor");
  rejects(
      with_header(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          data),
      "safetensors: tensors overlap at byte 4");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data),
          "safetensors: gap in the data at bytes [0, 4)");
  rejects(
      with_header(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                  data),
      "safetensors: tensor 'w': shape [4294967296,4294967296] is too large");
  rejects(
      with_header(
          R"({"__metadata__":{"k":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
      "safetensors: metadata value of 'k' is not a string");
  // Nesting is refused as it is parsed: dumping a million levels in a message overflowed the
  // stack.
  rejects(with_header(R"({"w":{"dtype":"F32","shape":)" + std::string(20, '[') +
                          std::string(20, ']') + R"(,"data_offsets":[0,8]}})",
                      data),
          "safetensors: header nested deeper than 16 levels");
  const SafetensorsFile f = SafetensorsFile::from_bytes(with_header(ok_json, data));
  CHECK_THROWS_WITH_AS(f.tensor<float>("v"), "safetensors: no tensor named 'v'", FormatError);
  CHECK_THROWS_WITH_AS(f.tensor<int32_t>("w"),
                       "safetensors: tensor 'w' has dtype F32, which does not convert to the "
                       "requested type",
                       FormatError);
  CHECK_THROWS_AS(SafetensorsFile::open("no/such/file.safetensors"), IOError);
}

TEST_CASE("every truncation of a valid file is rejected, never crashes") {
  const std::string bytes = safetensors_bytes<float>(
      {{"a", Tensor<float>({2, 3}, 1.0f)}, {"b", Tensor<float>({4}, 2.0f)}}, {{"k", "v"}});
  for (size_t n = 0; n < bytes.size(); ++n)
    CHECK_THROWS_AS(SafetensorsFile::from_bytes(bytes.substr(0, n)), FormatError);
}
