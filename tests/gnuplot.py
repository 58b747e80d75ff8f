"""Drawing a figure with gnuplot, for the benchmarks' --plot options."""
import os
import subprocess
import tempfile


def draw(out, size, commands):
    """Runs gnuplot on commands (everything after the terminal and output)
    drawing into out: PNG when its name ends in .png, else SVG; size is
    "WIDTH,HEIGHT" in pixels. Raises CalledProcessError when gnuplot fails."""
    term = (f"pngcairo noenhanced size {size}" if out.endswith(".png")
            else f'svg noenhanced size {size} dynamic background rgb "white"')
    with tempfile.NamedTemporaryFile("w", suffix=".gp") as f:
        f.write(f'set terminal {term}\nset output "{os.path.abspath(out)}"\n{commands}')
        f.flush()
        subprocess.run(["gnuplot", f.name], check=True)
    print(f"\nplot written to {out}")
