"""Host power: the RAPL/VM power monitor (stdlib only, also shipped as host_scripts/) and power CSV analysis."""
