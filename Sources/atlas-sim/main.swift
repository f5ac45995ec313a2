import AtlasSim
print("atlas-sim")
