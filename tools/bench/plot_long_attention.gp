# Long-context attention, forward + backward: ms per batch of 16,384 tokens against T
# (build/bench_long_attention, OPENBLAS_CORETYPE=Haswell, 2026-12-07, dev; docs/results.md).
# Run: gnuplot tools/bench/plot_long_attention.gp (writes docs/long_context/attention_time.png)
set terminal pngcairo size 1000,420 font ',10'
set output 'docs/long_context/attention_time.png'
$d32 << EOD
128 44.9 54.4 170.4 2050.3
256 46.6 41.7 161.7 1621.7
512 78.0 66.6 169.8 1611.8
1024 138.9 112.8 157.7 1563.4
2048 294.8 241.0 187.2 1702.2
4096 552.6 432.5 191.4 1799.3
8192 1149.2 902.1 200.9 1871.3
16384 2351.2 1966.7 200.3 2021.0
EOD
$d64 << EOD
128 64.0 61.9 1000.1 NaN
256 95.4 85.6 954.6 NaN
512 136.2 118.5 873.2 NaN
1024 240.0 207.1 850.4 NaN
2048 431.9 376.5 811.0 NaN
4096 942.9 846.1 859.6 NaN
8192 1895.9 1623.4 874.3 NaN
16384 3953.7 3630.7 913.7 NaN
EOD
set multiplot layout 1,2
set logscale xy
set xrange [100:20000]
set xlabel 'T (tokens per sequence; B = 16384 / T)'
set ylabel 'ms per batch'
set key top left
set grid
set title 'd = 32 (poly:2: D = 528, poly:3: D = 5,984)'
plot $d32 u 1:2 w lp t 'softmax fused', $d32 u 1:3 w lp t 'poly:2 fused', $d32 u 1:4 w lp t 'poly:2 linear', $d32 u 1:5 w lp t 'poly:3 linear'
set title 'd = 64 (poly:2: D = 2,080)'
plot $d64 u 1:2 w lp t 'softmax fused', $d64 u 1:3 w lp t 'poly:2 fused', $d64 u 1:4 w lp t 'poly:2 linear'
unset multiplot
