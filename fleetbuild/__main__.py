from fleetbuild.entry import run

run()
