#include "tools/cli/trainer.h"

#include "distributed/dist.h"

namespace pg::tools {

Trainer::Trainer(const TrainOptions& opt, Module& model, std::vector<ParamGroup> groups, double lr,
                 const RunLength& length, double floor, const Checkpoint* resumed)
    : grad_clip_(opt.grad_clip),
      overlap_(opt.overlap),
      schedule_steps_(length.schedule),
      replicas_(model, data_parallel_options(opt)),  // the same model on every rank, checked
      optimizer_(replicas_, std::move(groups), make_adamw),
      schedule_(run_schedule(opt, lr, length, floor)),
      first_step_(resumed ? resumed->step : 0) {
  if (resumed) resume_from(*resumed, model, optimizer_);
}

std::pair<double, double> Trainer::step(const Tensor& loss, int64_t step) {
  const double lr = schedule_.lr_at(step);
  optimizer_.set_lr(lr);
  optimizer_.zero_grad();
  loss.backward();
  replicas_.sync_gradients();  // the mean over ranks, before the norm is taken
  const double grad_norm = optimizer_.clip_grad_norm(grad_clip_);
  optimizer_.step();
  return {lr, grad_norm};
}

std::function<void(int64_t)> Trainer::saver(const std::string& path, const Module& model,
                                            std::map<std::string, std::string> metadata) {
  metadata["schedule_steps"] = std::to_string(schedule_steps_);
  return [this, path, &model, metadata = std::move(metadata)](int64_t step) {
    const StateDict optimizer_state = optimizer_.state_dict();  // every rank: ZeRO-1 gathers
    if (dist::rank() != 0) return;
    save_checkpoint(path, model, optimizer_state, step, metadata);
  };
}

void Trainer::report() const { report_data_parallel(replicas_, optimizer_, overlap_); }

}  // namespace pg::tools
