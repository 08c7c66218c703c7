// Trains a tiny MLP with the installed libraries, through DataParallel (a world of one here,
// several processes under mpirun): the loss must fall.
#include <distributed/data_parallel.h>
#include <nn/layers.h>
#include <nn/optim.h>
#include <polygrad.h>

#include <cstdio>

int main() {
  pg::dist::Session session;
  pg::manual_seed(0);
  pg::Sequential net;
  net.add(std::make_shared<pg::Linear>(4, 16))
      .add(std::make_shared<pg::ReLU>())
      .add(std::make_shared<pg::Linear>(16, 1));
  pg::Tensor x = pg::randn({64, 4}), y = pg::sum(x, {1}, true);
  pg::AdamW opt({{net.parameters(), 0.01, 0.0}});
  pg::dist::DataParallel replicas(net);
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    pg::Tensor loss = pg::mse_loss(net(x), y);
    opt.zero_grad();
    loss.backward();
    replicas.sync_gradients();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  std::printf("loss %.4f -> %.4f\n", first, last);
  return last < 0.1 * first ? 0 : 1;
}
