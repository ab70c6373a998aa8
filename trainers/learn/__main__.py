from rowgym.trainers.learn.run import main

if __name__ == "__main__":
    main()
