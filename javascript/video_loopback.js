// Hover hints for the Video Loopback panel: the WebUI shows titles[label] on hover (hints.js).
(function () {
    if (typeof titles === "undefined") {
        return;
    }
    titles["Check schedules"] = "Evaluate every schedule for every frame and loop, and plot the values, without generating anything";
    titles["resume_run_folder"] = "A run folder that was stopped: Generate finishes it with the settings it was started with";
})();
