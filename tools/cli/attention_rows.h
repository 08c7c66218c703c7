// The per-row-position view of a causal model's attention: row i of A sees i + 1 keys, so a
// normalisation by the number of all keys treats early and late rows differently.
#pragma once
#include <cstdint>
#include <vector>

#include "models/gpt.h"

namespace pg::tools {

/// Per layer and query position i: the RMS over batch and heads of ||A_i||_2 (whose RMS over
/// rows is ||A||_F/sqrt(N)) and the mean row mass sum_j A_ij (1 for softmax).
struct AttentionRows {
  std::vector<std::vector<double>> norm, mass;  ///< [layer][row]
};

/// AttentionRows of `model` on the validation windows validation_loss() uses (`batches` of
/// `batch`), computed through the composite path (the only one that holds A); the model's
/// attention path is restored afterwards.
AttentionRows attention_rows(Gpt& model, const std::vector<int32_t>& val, int64_t batch,
                             int64_t batches);

}  // namespace pg::tools
