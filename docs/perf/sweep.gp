# written by dledger-bench --plot; run again with: cd docs/perf && gnuplot sweep.gp
set terminal pngcairo size 1200,750 noenhanced
set output 'sweep-throughput.png'
set title 'dledger-bench: committed entries/s against requests in flight'
set logscale xy
set xlabel 'requests in flight (clients x in flight per client)'
set ylabel 'committed entries/s'
set grid
set key left top
$s0 << EOD
1 1836.0 1x1
4 7018.3 1x4
16 22851.8 1x16
64 69888.5 4x16
64 70743.8 1x64
256 204887.9 4x64
EOD
$s1 << EOD
256 146828.6 open80
EOD
$s2 << EOD
64 415640.6 batch64
EOD
$s3 << EOD
64 84274.0 1KiB
EOD
$s4 << EOD
256 64430.8 16groups
EOD
$s5 << EOD
256 20121.3 64groups
EOD
$s6 << EOD
256 13837.3 64groups+960idle
EOD
plot $s0 using 1:2 with linespoints title '128 B x 1, 1 group + 0 idle', $s0 using 1:2:3 with labels offset 0,1 font ',8' notitle, $s1 using 1:2 with linespoints title '128 B x 1, 1 group + 0 idle, open loop', $s1 using 1:2:3 with labels offset 0,1 font ',8' notitle, $s2 using 1:2 with linespoints title '128 B x 64, 1 group + 0 idle', $s2 using 1:2:3 with labels offset 0,1 font ',8' notitle, $s3 using 1:2 with linespoints title '1024 B x 64, 1 group + 0 idle', $s3 using 1:2:3 with labels offset 0,1 font ',8' notitle, $s4 using 1:2 with linespoints title '128 B x 1, 16 groups + 0 idle', $s4 using 1:2:3 with labels offset 0,1 font ',8' notitle, $s5 using 1:2 with linespoints title '128 B x 1, 64 groups + 0 idle', $s5 using 1:2:3 with labels offset 0,1 font ',8' notitle, $s6 using 1:2 with linespoints title '128 B x 1, 64 groups + 960 idle', $s6 using 1:2:3 with labels offset 0,1 font ',8' notitle
unset logscale
unset label
set output 'sweep-latency-cdf.png'
set title 'dledger-bench: latency CDF of each run'
set logscale x
set xlabel 'latency (ms)'
set ylabel 'fraction of requests at or below'
set yrange [0:1]
set grid
set key right bottom
plot 'sweep-run001-1x1.cdf' using 1:2 with lines lw 2 dt 1 title '1x1', 'sweep-run002-1x4.cdf' using 1:2 with lines lw 2 dt 1 title '1x4', 'sweep-run003-1x16.cdf' using 1:2 with lines lw 2 dt 1 title '1x16', 'sweep-run004-4x16.cdf' using 1:2 with lines lw 2 dt 1 title '4x16', 'sweep-run005-1x64.cdf' using 1:2 with lines lw 2 dt 1 title '1x64', 'sweep-run006-4x64.cdf' using 1:2 with lines lw 2 dt 1 title '4x64', 'sweep-run007-open80.cdf' using 1:2 with lines lw 2 dt 1 title 'open80', 'sweep-run008-batch64.cdf' using 1:2 with lines lw 2 dt 1 title 'batch64', 'sweep-run009-1KiB.cdf' using 1:2 with lines lw 2 dt 2 title '1KiB', 'sweep-run010-16groups.cdf' using 1:2 with lines lw 2 dt 2 title '16groups', 'sweep-run011-64groups.cdf' using 1:2 with lines lw 2 dt 2 title '64groups', 'sweep-run012-64groups+960idle.cdf' using 1:2 with lines lw 2 dt 2 title '64groups+960idle'
