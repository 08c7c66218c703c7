#include "tools/cli/attention_rows.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/data_loader.h"

namespace pg::tools {

AttentionRows attention_rows(Gpt& model, const std::vector<int32_t>& val, int64_t batch,
                             int64_t batches) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto& blocks = model.blocks();
  const int64_t T = model.config().context, H = model.config().heads;
  AttentionRows rows;
  rows.norm.assign(blocks.size(), std::vector<double>(static_cast<size_t>(T), 0.0));
  rows.mass = rows.norm;
  const Device device = model.parameters().front().device();
  std::vector<AttentionPath> paths;
  for (const auto& b : blocks) {
    paths.push_back(b->attn->config().path);
    b->attn->set_path(AttentionPath::Composite);
  }
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = text_batch(val, batch, T, 0xe7a1, i);
    model(b.inputs.to(device));
    for (size_t l = 0; l < blocks.size(); ++l) {
      const AttentionStats& st = blocks[l]->attn->stats();
      auto sq = st.row_sq.to_vector<double>(), sum = st.row_sum.to_vector<double>();
      for (size_t r = 0; r < sq.size(); ++r) {
        rows.norm[l][r] += sq[r];
        rows.mass[l][r] += sum[r];
      }
    }
  }
  for (size_t l = 0; l < blocks.size(); ++l) blocks[l]->attn->set_path(paths[l]);
  const double count = static_cast<double>(batch * H * batches);
  for (size_t l = 0; l < blocks.size(); ++l)
    for (size_t r = 0; r < rows.norm[l].size(); ++r) {
      rows.norm[l][r] = std::sqrt(rows.norm[l][r] / count);
      rows.mass[l][r] /= count;
    }
  model.train(was_training);
  return rows;
}

}  // namespace pg::tools
