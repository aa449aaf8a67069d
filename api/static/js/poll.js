// A poller that backs off while nothing changes and stops when told the job is done.
//   fn() -> {changed: bool, done: bool}
// The delay starts at `min`, grows by `factor` after each unchanged poll up to `max`, and goes
// back to `min` on a change. A hidden tab polls at `max`; showing it again polls at once.
export class Poller {
  constructor(fn, { min = 1000, max = 15000, factor = 1.6, onState } = {}) {
    this.fn = fn;
    this.min = min;
    this.max = max;
    this.factor = factor;
    this.delay = min;
    this.onState = onState || (() => {});
    this.timer = null;
    this.running = false;
    this.stopped = true;
    this.visibility = () => { if (!document.hidden) this.poke(); };
  }

  start() {
    this.stopped = false;
    document.addEventListener("visibilitychange", this.visibility);
    this.tick();
    return this;
  }

  stop(reason = "stopped") {
    this.stopped = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.visibility);
    this.onState(reason, null);
  }

  poke() {
    if (this.stopped) return;
    this.delay = this.min;
    if (!this.running) {
      clearTimeout(this.timer);
      this.tick();
    }
  }

  async tick() {
    if (this.stopped) return;
    this.running = true;
    let res;
    try {
      res = await this.fn();
    } catch (err) {
      res = { changed: false, error: err };
    }
    this.running = false;
    if (this.stopped) return;
    if (res.done) {
      this.stop("done");
      return;
    }
    this.delay = res.changed ? this.min : Math.min(this.max, this.delay * this.factor);
    if (res.error) this.delay = Math.max(this.delay, Math.min(this.max, 5000));
    const wait = document.hidden ? this.max : this.delay;
    this.onState(res.error ? "error" : "polling", wait);
    this.timer = setTimeout(() => this.tick(), wait);
  }
}
